//! `#[derive(BinaryHeader)]` for [`meta-protocol-core`]: declare where each field of a
//! fixed-layout binary header lives and get its parser, writer and metadata mapping.
//!
//! Use the macro through its re-export, `meta_protocol_core::BinaryHeader` (the generated code
//! names `::meta_protocol_core`); the runnable examples are in that crate's documentation and in
//! `docs/writing-a-codec.md`. The examples below are not compiled here, because a proc-macro
//! crate cannot run its own derive in doctests.
//!
//! [`meta-protocol-core`]: https://example.invalid/meta-protocol
//!
//! # Example
//!
//! Dubbo's 16-byte header:
//!
//! ```ignore
//! use meta_protocol_core::BinaryHeader;
//!
//! #[derive(BinaryHeader, Clone, Debug, Default)]
//! #[header(size = 16, endian = "big")]
//! struct Dubbo {
//!     #[field(offset = 0, magic = 0xdabb)]
//!     magic: u16,
//!     #[field(offset = 2, bits = 0x80)]
//!     request: bool,
//!     #[field(offset = 2, bits = 0x40)]
//!     two_way: bool,
//!     #[field(offset = 2, bits = 0x20)]
//!     event: bool,
//!     #[field(offset = 2, bits = 0x1f, meta = "serialization")]
//!     serialization: u8,
//!     #[field(offset = 3, meta)]
//!     status: u8,
//!     #[field(offset = 4, correlation)]
//!     request_id: u64,
//!     #[field(offset = 12, body_len)]
//!     len: u32,
//! }
//! ```
//!
//! `Dubbo::peek(&buf)` parses the first 16 bytes of `buf` (`Ok(None)` while fewer have
//! arrived, `Err(HeaderError::BadMagic { .. })` unless they start with `da bb`); `write`
//! appends them; `to_metadata` records `serialization` and `status`; `correlation()` is the
//! request id and `body_len()` the length field.
//!
//! # Struct attribute: `#[header(...)]`
//!
//! Optional; both keys are optional.
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `size = N` | the header's size in bytes (`BinaryHeader::SIZE`); must reach at least the end of every field, bytes no field covers are written as 0 | the end of the furthest field |
//! | `endian = "big"` / `"little"` | byte order of the integer fields | `"big"` |
//!
//! ```ignore
//! #[derive(BinaryHeader, Clone, Debug)]
//! #[header(size = 8, endian = "little")] // two reserved bytes at the end
//! struct Small {
//!     #[field(offset = 0)]
//!     kind: u16,
//!     #[field(offset = 2, body_len)]
//!     len: u32,
//! }
//! ```
//!
//! # Field attribute: `#[field(...)]`
//!
//! Every field needs one, with at least `offset`. Several `#[field(...)]` attributes on one
//! field are merged.
//!
//! ## `offset = N` (required)
//!
//! The byte offset of the field in the header. Fields may not overlap, except `bits` fields
//! sharing a byte with disjoint masks.
//!
//! ## Field types
//!
//! `u8`, `u16`, `u32`, `u64`, `i8`, `i16`, `i32`, `i64` (read and written in the header's byte
//! order), `bool` (only as a `bits` flag) and `[u8; N]` (raw bytes, copied as they are).
//!
//! ## `width = N`
//!
//! The number of bytes of an integer field, from 1 up to the size of its type (the default).
//! For fields the language has no type for, such as a 24-bit length; signed fields are
//! sign-extended when read. `write` keeps only the low `N` bytes of the value.
//!
//! ```ignore
//! #[field(offset = 4, width = 3)]
//! tag: u32, // 3 bytes on the wire
//! #[field(offset = 7, width = 3)]
//! delta: i32, // 3 bytes, -8388608..=8388607
//! ```
//!
//! ## `endian = "big"` / `"little"`
//!
//! Overrides the header's byte order for one integer field.
//!
//! ```ignore
//! #[field(offset = 12, endian = "little")]
//! len: u32,
//! ```
//!
//! ## `magic = <integer>` / `magic = b"..."`
//!
//! A constant: `peek` fails with `HeaderError::BadMagic { field, expected, found }` (the field
//! name and both values as unsigned numbers; byte strings read big-endian) when the buffer holds
//! anything else, and `write` always writes the constant, whatever the field holds. An integer
//! field takes an integer literal that fits its type and `width`; a `[u8; N]` field takes a
//! byte string of exactly `N` bytes, at most 8.
//!
//! ```ignore
//! #[field(offset = 0, magic = 0xdabb)]
//! magic: u16,
//! #[field(offset = 0, magic = b"PRPC")]
//! preamble: [u8; 4],
//! ```
//!
//! ## `bits = 0xMASK`
//!
//! A field inside the one byte at `offset`: the bits `MASK` (one contiguous run) of that byte,
//! shifted down, i.e. `(byte & MASK) >> MASK.trailing_zeros()`. A `bool` field takes a
//! one-bit mask; a `u8` field takes any mask and holds a small number. Several `bits` fields
//! may share a byte if their masks are disjoint; bits no field covers are written as 0. On
//! `write` a `u8` value too large for its mask loses its high bits (`apply_metadata` rejects
//! such values instead).
//!
//! ```ignore
//! #[field(offset = 2, bits = 0x80)]
//! request: bool,
//! #[field(offset = 2, bits = 0x1f)]
//! serialization: u8, // 0..=31
//! ```
//!
//! ## `meta` / `meta = "key"`
//!
//! The field is a routable metadata key: `to_metadata` records it (integers in decimal, `bool`
//! as `true` / `false`) under the field's name, or under `"key"`; `apply_metadata` parses it
//! back, failing with `HeaderError::MissingKey` when the key was removed and
//! `HeaderError::InvalidValue` when the value does not parse or does not fit (then nothing is
//! changed). `METADATA_KEYS` lists the keys in field order. Not for `magic` fields or byte
//! arrays.
//!
//! ```ignore
//! #[field(offset = 3, meta)]
//! status: u8, // key "status"
//! #[field(offset = 4, meta = "service")]
//! service_id: u16, // key "service"
//! ```
//!
//! ## `correlation`
//!
//! The request id that pairs a response with its request; at most one field, a whole integer
//! (not `bits` or `magic`). `correlation()` returns it widened to `u64` (a signed field is
//! widened to `i64` and reinterpreted, so `-1i32` is `u64::MAX`); `set_correlation(id)` stores
//! it, or fails with `HeaderError::OutOfRange` when `id` does not fit the field (for a signed
//! field: when `id as i64` does not). Without such a field `correlation()` is `None` and
//! `set_correlation` fails with `HeaderError::NoField("correlation")`.
//!
//! ```ignore
//! #[field(offset = 4, correlation)]
//! request_id: u64,
//! ```
//!
//! ## `body_len` and `adjust = N`
//!
//! The number of bytes that follow the header; at most one field, a whole unsigned integer.
//! With `adjust = N` (an `i64` literal) the body length is the field plus `N`, e.g. `-16`
//! when the field counts a 16-byte header too. `body_len()` returns the body length (0 if the
//! field is smaller than `-N`); `set_body_len(len)` stores `len - N`, or fails with
//! `HeaderError::OutOfRange` when that does not fit. Without such a field `body_len()` is
//! `None` and `set_body_len` fails with `HeaderError::NoField("body length")`.
//!
//! ```ignore
//! #[field(offset = 12, body_len, adjust = -16)]
//! total_len: u32, // the whole frame's length
//! ```
//!
//! ## Plain fields
//!
//! A field with only `offset` (and maybe `width` / `endian`) is parsed and written, and is not
//! metadata.
//!
//! # Mistakes are compile errors
//!
//! A mistake in the attributes is reported at the attribute or key responsible, naming the
//! rule it breaks: a missing `#[field]` or `offset`, an unknown or repeated key, a field past
//! `size`, overlapping fields or masks, a second `correlation` or `body_len` field, `bits` on
//! a type other than `bool` / `u8` or with a zero, non-contiguous or (for `bool`) multi-bit
//! mask, a `bool` without `bits`, a `magic` that does not fit its field, `meta` on a `magic`
//! field or a byte array, a `width` of 0 or wider than the type, an unsupported type, `adjust`
//! without `body_len`, an `endian` other than `"big"` / `"little"`, and deriving on an enum, a
//! union, a tuple struct or a generic struct. A stand-in implementation is generated next to
//! the error so that it is the only error reported.
#![forbid(unsafe_code)]

mod errors;
mod expand;
mod parse;
mod validate;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `meta_protocol_core::BinaryHeader` for a struct whose fields carry
/// `#[field(offset = N, ...)]` attributes (and optionally `#[header(size = N, endian = "...")]`
/// on the struct). See the [crate documentation](crate) for every attribute.
#[proc_macro_derive(BinaryHeader, attributes(header, field))]
pub fn derive_binary_header(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let checked = parse::parse(&input).and_then(|parsed| validate::validate(&parsed));
    match checked {
        Ok(layout) => expand::expand(&layout).into(),
        Err(errors) => {
            let mut out = errors.to_compile_error();
            // A generic struct is reported as such; an impl for it would need bounds we cannot
            // guess, so there is no stand-in.
            if input.generics.params.is_empty() && input.generics.where_clause.is_none() {
                out.extend(expand::fallback(&input.ident));
            }
            out.into()
        }
    }
}
