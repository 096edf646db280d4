//! Phase 3: the `impl BinaryHeader` of a checked [`Layout`], and the stand-in impl emitted next
//! to compile errors.
//!
//! The generated code names everything by absolute path (`::meta_protocol_core::...`,
//! `::core::...`), and its local variables have mixed-site hygiene, so a field called `buf` or
//! `out` cannot collide with them.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote};
use syn::Ident;

use crate::parse::{Endian, IntType};
use crate::validate::{Laid, Layout, Repr, signed_range, unsigned_max};

/// A local variable of the generated code, invisible to the user's code.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// The local holding a field's value before the struct is built.
fn field_local(laid: &Laid<'_>) -> Ident {
    format_ident!("field_{}", laid.name, span = Span::mixed_site())
}

/// `::core::primitive::<name>`.
fn primitive(name: &str) -> TokenStream {
    let ident = Ident::new(name, Span::call_site());
    quote!(::core::primitive::#ident)
}

fn int_type(ty: IntType) -> TokenStream {
    primitive(&ty.name())
}

fn index(i: usize) -> Literal {
    Literal::usize_unsuffixed(i)
}

/// The generated `impl BinaryHeader`.
pub(crate) fn expand(layout: &Layout<'_>) -> TokenStream {
    let core = quote!(::meta_protocol_core);
    let result = quote!(::core::result::Result);
    let option = quote!(::core::option::Option);
    let u64_ = primitive("u64");
    let ident = layout.ident;
    let size = index(layout.size);

    let buf = local("buf");
    let dst = local("dst");
    let out = local("out");

    let mut reads = Vec::new();
    let mut writes = Vec::new();
    let mut inits = Vec::new();
    for laid in &layout.fields {
        let field = laid.ident;
        let var = field_local(laid);
        reads.push(read(laid, &buf));
        writes.push(write(laid, &out));
        inits.push(quote!(#field: #var));
    }

    let keys: Vec<&str> = layout
        .fields
        .iter()
        .filter_map(|l| l.meta.as_deref())
        .collect();
    let (to_metadata, apply_metadata) = metadata(layout);
    let (correlation, set_correlation) = correlation(layout);
    let (body_len, set_body_len) = body_len(layout);

    quote! {
        #[automatically_derived]
        impl #core::BinaryHeader for #ident {
            const SIZE: ::core::primitive::usize = #size;
            const METADATA_KEYS: &'static [&'static ::core::primitive::str] = &[#(#keys),*];

            fn peek(
                #buf: &[::core::primitive::u8],
            ) -> #result<#option<Self>, #core::HeaderError> {
                let #option::Some(#buf) = <[::core::primitive::u8]>::first_chunk::<#size>(#buf)
                else {
                    return #result::Ok(#option::None);
                };
                #(#reads)*
                #result::Ok(#option::Some(Self { #(#inits),* }))
            }

            fn write(&self, #dst: &mut #core::__private::BytesMut) {
                let mut #out = [0u8; #size];
                #(#writes)*
                #core::__private::BufMut::put_slice(#dst, &#out);
            }

            fn body_len(&self) -> #option<#u64_> {
                #body_len
            }

            #set_body_len

            fn correlation(&self) -> #option<#u64_> {
                #correlation
            }

            #set_correlation

            #to_metadata

            #apply_metadata
        }
    }
}

/// `let field_x: T = ...;` reading the field from `buf` (a `&[u8; SIZE]`).
fn read(laid: &Laid<'_>, buf: &Ident) -> TokenStream {
    let core = quote!(::meta_protocol_core);
    let result = quote!(::core::result::Result);
    let u8_ = primitive("u8");
    let u64_ = primitive("u64");
    let var = field_local(laid);
    let name = &laid.name;
    let o = index(laid.offset);
    match &laid.repr {
        Repr::Int {
            ty,
            width,
            endian,
            magic,
        } => read_int(laid, buf, *ty, *width, *endian, *magic),
        Repr::Bits { mask, flag: true } => {
            quote! { let #var: ::core::primitive::bool = (#buf[#o] & #mask) != 0; }
        }
        Repr::Bits { mask, flag: false } => {
            let shift = mask.trailing_zeros();
            let value = match (*mask, shift) {
                (0xff, _) => quote!(#buf[#o]),
                (_, 0) => quote!(#buf[#o] & #mask),
                _ => quote!((#buf[#o] & #mask) >> #shift),
            };
            quote! { let #var: #u8_ = #value; }
        }
        Repr::Bytes {
            len,
            magic: Some(expected),
        } => {
            let bytes = (laid.offset..laid.offset + len).map(|i| {
                let i = index(i);
                quote!(#buf[#i])
            });
            let pad = (*len..8).map(|_| quote!(0u8));
            let found = (0..*len).map(|i| {
                let i = index(i);
                quote!(#var[#i])
            });
            let expected_u64 = expected
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            let len = index(*len);
            quote! {
                let #var: [#u8_; #len] = [#(#bytes),*];
                if #var != [#(#expected),*] {
                    return #result::Err(#core::HeaderError::BadMagic {
                        field: #name,
                        expected: #expected_u64,
                        found: #u64_::from_be_bytes([#(#pad,)* #(#found),*]),
                    });
                }
            }
        }
        Repr::Bytes { len, magic: None } => {
            let end = index(laid.offset + len);
            let len = index(*len);
            quote! {
                let mut #var = [0u8; #len];
                #var.copy_from_slice(&#buf[#o..#end]);
            }
        }
    }
}

/// `let field_x: T = ...;` for an integer field of `width` bytes, checking its `magic`.
fn read_int(
    laid: &Laid<'_>,
    buf: &Ident,
    ty: IntType,
    width: usize,
    endian: Endian,
    magic: Option<u64>,
) -> TokenStream {
    let core = quote!(::meta_protocol_core);
    let result = quote!(::core::result::Result);
    let u64_ = primitive("u64");
    let var = field_local(laid);
    let name = &laid.name;
    let t = int_type(ty);
    let bytes: Vec<TokenStream> = (laid.offset..laid.offset + width)
        .map(|i| {
            let i = index(i);
            quote!(#buf[#i])
        })
        .collect();
    let from = match endian {
        Endian::Big => quote!(from_be_bytes),
        Endian::Little => quote!(from_le_bytes),
    };
    if magic.is_none() && width == ty.bytes {
        return quote! { let #var: #t = #t::#from([#(#bytes),*]); };
    }
    // The `width` bytes as an unsigned number, zero-extended to 64 bits.
    let pad = (width..8).map(|_| quote!(0u8));
    let raw_bytes = match endian {
        Endian::Big => quote!([#(#pad,)* #(#bytes),*]),
        Endian::Little => quote!([#(#bytes,)* #(#pad),*]),
    };
    let raw = local("raw");
    let check = magic.map(|m| {
        quote! {
            if #raw != #m {
                return #result::Err(#core::HeaderError::BadMagic {
                    field: #name,
                    expected: #m,
                    found: #raw,
                });
            }
        }
    });
    let value = match (ty.signed, ty.bytes) {
        (false, 8) => quote!(#raw),
        (false, _) => quote!(#raw as #t),
        (true, bytes) if bytes == width => quote!(#raw as #t),
        (true, _) => {
            // Sign-extend the narrow field through i64.
            let unused = u32::try_from(64 - 8 * width).expect("width is 1..=8");
            let i64_ = primitive("i64");
            let extended = quote!((#raw << #unused) as #i64_ >> #unused);
            if ty.bytes == 8 {
                extended
            } else {
                quote!((#extended) as #t)
            }
        }
    };
    quote! {
        let #var: #t = {
            let #raw = #u64_::#from(#raw_bytes);
            #check
            #value
        };
    }
}

/// Statements storing the field into `out` (a zeroed `[u8; SIZE]`).
fn write(laid: &Laid<'_>, out: &Ident) -> TokenStream {
    let u64_ = primitive("u64");
    let field = laid.ident;
    let o = index(laid.offset);
    match &laid.repr {
        Repr::Int {
            width,
            endian,
            magic: Some(m),
            ..
        } => {
            let bytes = m.to_be_bytes();
            let stores = (0..*width).map(|i| {
                let at = index(laid.offset + i);
                let b = match endian {
                    Endian::Big => bytes[8 - width + i],
                    Endian::Little => bytes[7 - i],
                };
                quote!(#out[#at] = #b;)
            });
            // The constant is written whatever the field holds.
            quote! { let _ = &self.#field; #(#stores)* }
        }
        Repr::Int {
            ty,
            width,
            endian,
            magic: None,
        } => {
            let end = index(laid.offset + width);
            let to = match endian {
                Endian::Big => quote!(to_be_bytes),
                Endian::Little => quote!(to_le_bytes),
            };
            if *width == ty.bytes {
                let t = int_type(*ty);
                return quote! { #out[#o..#end].copy_from_slice(&#t::#to(self.#field)); };
            }
            let value = if ty.signed {
                quote!(self.#field as #u64_)
            } else {
                quote!(#u64_::from(self.#field))
            };
            let part = match endian {
                Endian::Big => {
                    let skip = index(8 - width);
                    quote!([#skip..])
                }
                Endian::Little => {
                    let keep = index(*width);
                    quote!([..#keep])
                }
            };
            quote! { #out[#o..#end].copy_from_slice(&#u64_::#to(#value)#part); }
        }
        Repr::Bits { mask, flag: true } => {
            quote! { if self.#field { #out[#o] |= #mask; } }
        }
        Repr::Bits { mask, flag: false } => {
            let shift = mask.trailing_zeros();
            let value = match (*mask, shift) {
                (0xff, _) => quote!(self.#field),
                (_, 0) => quote!(self.#field & #mask),
                _ => quote!((self.#field << #shift) & #mask),
            };
            quote! { #out[#o] |= #value; }
        }
        Repr::Bytes {
            magic: Some(bytes), ..
        } => {
            let stores = bytes.iter().enumerate().map(|(i, b)| {
                let at = index(laid.offset + i);
                quote!(#out[#at] = #b;)
            });
            quote! { let _ = &self.#field; #(#stores)* }
        }
        Repr::Bytes { len, magic: None } => {
            let end = index(laid.offset + len);
            quote! { #out[#o..#end].copy_from_slice(&self.#field); }
        }
    }
}

/// The fields marked `meta`, with their keys.
fn meta_fields<'l>(layout: &'l Layout<'_>) -> Vec<(&'l Laid<'l>, &'l str)> {
    layout
        .fields
        .iter()
        .filter_map(|l| l.meta.as_deref().map(|k| (l, k)))
        .collect()
}

/// `to_metadata` and `apply_metadata`.
fn metadata(layout: &Layout<'_>) -> (TokenStream, TokenStream) {
    let meta = meta_fields(layout);
    let md = local(if meta.is_empty() { "_md" } else { "md" });
    (to_metadata(&meta, &md), apply_metadata(&meta, &md))
}

fn to_metadata(meta: &[(&Laid<'_>, &str)], md: &Ident) -> TokenStream {
    let core = quote!(::meta_protocol_core);
    let u64_ = primitive("u64");
    let i64_ = primitive("i64");
    let records = meta.iter().map(|(laid, key)| {
        let field = laid.ident;
        let value = match &laid.repr {
            Repr::Bits { flag: true, .. } => quote!(#core::MetaValue::from_bool(self.#field)),
            Repr::Int { ty, .. } if ty.signed && ty.bytes == 8 => {
                quote!(#core::MetaValue::from_i64(self.#field))
            }
            Repr::Int { ty, .. } if ty.signed => {
                quote!(#core::MetaValue::from_i64(#i64_::from(self.#field)))
            }
            Repr::Int { ty, .. } if ty.bytes == 8 => {
                quote!(#core::MetaValue::from_u64(self.#field))
            }
            _ => quote!(#core::MetaValue::from_u64(#u64_::from(self.#field))),
        };
        quote! { #core::Metadata::record(#md, #key, #value); }
    });
    quote! {
        fn to_metadata(&self, #md: &mut #core::Metadata) {
            #(#records)*
        }
    }
}

fn apply_metadata(meta: &[(&Laid<'_>, &str)], md: &Ident) -> TokenStream {
    let core = quote!(::meta_protocol_core);
    let result = quote!(::core::result::Result);
    let option = quote!(::core::option::Option);
    let value = local("value");
    let parses = meta.iter().map(|(laid, key)| {
        let var = field_local(laid);
        let (ty, parse) = parse_meta_value(laid, key, &value);
        quote! {
            let #var: #ty = {
                let #value = match #core::Metadata::get(#md, #key) {
                    #option::Some(#value) => #value,
                    #option::None => {
                        return #result::Err(#core::HeaderError::MissingKey { key: #key });
                    }
                };
                #parse
            };
        }
    });
    let assigns = meta.iter().map(|(laid, _)| {
        let field = laid.ident;
        let var = field_local(laid);
        quote! { self.#field = #var; }
    });
    // All values are parsed before any is stored: an error leaves the header unchanged.
    quote! {
        fn apply_metadata(
            &mut self,
            #md: &#core::Metadata,
        ) -> #result<(), #core::HeaderError> {
            #(#parses)*
            #(#assigns)*
            #result::Ok(())
        }
    }
}

/// The field's type, and an expression parsing the `&str` in `value` as that type
/// (returning `InvalidValue` when it does not parse or fit).
fn parse_meta_value(laid: &Laid<'_>, key: &str, value: &Ident) -> (TokenStream, TokenStream) {
    let core = quote!(::meta_protocol_core);
    let result = quote!(::core::result::Result);
    let n = local("n");
    let invalid = |reason: String| {
        quote! {
            return #result::Err(#core::HeaderError::InvalidValue {
                key: #key,
                value: ::std::string::String::from(#value),
                reason: #reason,
            })
        }
    };
    // (field type, type to parse, guard on the parsed `n`, conversion of `n`, reason)
    let (ty, parse_as, guard, convert, reason) = match &laid.repr {
        Repr::Bits { flag: true, .. } => {
            let fail = invalid("expected `true` or `false`".to_owned());
            let parse = quote! {
                match #value {
                    "true" => true,
                    "false" => false,
                    _ => #fail,
                }
            };
            return (primitive("bool"), parse);
        }
        Repr::Bits { mask, flag: false } => {
            let max = mask >> mask.trailing_zeros();
            let u8_ = primitive("u8");
            (
                u8_.clone(),
                u8_,
                (max != u8::MAX).then(|| quote!(if #n <= #max)),
                quote!(#n),
                format!(
                    "expected an unsigned integer that fits {} bits",
                    max.count_ones()
                ),
            )
        }
        Repr::Int { ty, width, .. } => {
            let t = int_type(*ty);
            let kind = if ty.signed { "a signed" } else { "an unsigned" };
            let reason = format!("expected {kind} integer that fits {} bits", 8 * width);
            if *width == ty.bytes {
                // The type's own parser checks the range.
                (t.clone(), t, None, quote!(#n), reason)
            } else if ty.signed {
                let (min, max) = signed_range(*width);
                let guard = quote!(if (#min..=#max).contains(&#n));
                (
                    t.clone(),
                    primitive("i64"),
                    Some(guard),
                    quote!(#n as #t),
                    reason,
                )
            } else {
                let max = unsigned_max(*width);
                let guard = quote!(if #n <= #max);
                (
                    t.clone(),
                    primitive("u64"),
                    Some(guard),
                    quote!(#n as #t),
                    reason,
                )
            }
        }
        Repr::Bytes { .. } => unreachable!("validate rejects `meta` on byte arrays"),
    };
    let fail = invalid(reason);
    let parse = quote! {
        match <#parse_as as ::core::str::FromStr>::from_str(#value) {
            #result::Ok(#n) #guard => #convert,
            _ => #fail,
        }
    };
    (ty, parse)
}

/// The body of `correlation` and the whole `set_correlation`.
fn correlation(layout: &Layout<'_>) -> (TokenStream, TokenStream) {
    let core = quote!(::meta_protocol_core);
    let result = quote!(::core::result::Result);
    let option = quote!(::core::option::Option);
    let u64_ = primitive("u64");
    let Some(laid) = layout.correlation.map(|i| &layout.fields[i]) else {
        let id = local("_id");
        return (
            quote!(#option::None),
            quote! {
                fn set_correlation(&mut self, #id: #u64_) -> #result<(), #core::HeaderError> {
                    #result::Err(#core::HeaderError::NoField("correlation"))
                }
            },
        );
    };
    let Repr::Int { ty, width, .. } = laid.repr else {
        unreachable!("validate only accepts integer correlation fields")
    };
    let field = laid.ident;
    let name = &laid.name;
    let t = int_type(ty);
    let id = local("id");
    let out_of_range = quote! {
        return #result::Err(#core::HeaderError::OutOfRange { field: #name, value: #id });
    };
    let (get, store) = if ty.signed {
        // Two's complement: the id is the field widened to i64, reinterpreted as u64.
        let i64_ = primitive("i64");
        let signed = local("signed");
        let check = (width < 8).then(|| {
            let (min, max) = signed_range(width);
            quote! { if !(#min..=#max).contains(&#signed) { #out_of_range } }
        });
        let value = if ty.bytes == 8 {
            quote!(#signed)
        } else {
            quote!(#signed as #t)
        };
        (
            quote!(#option::Some(self.#field as #u64_)),
            quote! {
                let #signed = #id as #i64_;
                #check
                self.#field = #value;
            },
        )
    } else {
        let check = (width < 8).then(|| {
            let max = unsigned_max(width);
            quote! { if #id > #max { #out_of_range } }
        });
        let (get, value) = if ty.bytes == 8 {
            (quote!(self.#field), quote!(#id))
        } else {
            (quote!(#u64_::from(self.#field)), quote!(#id as #t))
        };
        (
            quote!(#option::Some(#get)),
            quote! {
                #check
                self.#field = #value;
            },
        )
    };
    (
        get,
        quote! {
            fn set_correlation(&mut self, #id: #u64_) -> #result<(), #core::HeaderError> {
                #store
                #result::Ok(())
            }
        },
    )
}

/// The body of `body_len` and the whole `set_body_len`.
fn body_len(layout: &Layout<'_>) -> (TokenStream, TokenStream) {
    let core = quote!(::meta_protocol_core);
    let result = quote!(::core::result::Result);
    let option = quote!(::core::option::Option);
    let u64_ = primitive("u64");
    let Some((laid, adjust)) = layout.body_len.map(|(i, a)| (&layout.fields[i], a)) else {
        let len = local("_len");
        return (
            quote!(#option::None),
            quote! {
                fn set_body_len(&mut self, #len: #u64_) -> #result<(), #core::HeaderError> {
                    #result::Err(#core::HeaderError::NoField("body length"))
                }
            },
        );
    };
    let Repr::Int { ty, width, .. } = laid.repr else {
        unreachable!("validate only accepts integer body_len fields")
    };
    let field = laid.ident;
    let name = &laid.name;
    let t = int_type(ty);
    let len = local("len");
    let raw = local("raw");
    let out_of_range = quote! {
        return #result::Err(#core::HeaderError::OutOfRange { field: #name, value: #len })
    };
    let stored = if ty.bytes == 8 {
        quote!(self.#field)
    } else {
        quote!(#u64_::from(self.#field))
    };
    let magnitude = adjust.unsigned_abs();
    // body_len() = field + adjust, saturating; set_body_len stores len - adjust, checked.
    let (get, to_raw) = match adjust.signum() {
        0 => (quote!(#stored), quote!(#option::Some(#len))),
        1 => (
            quote!(#u64_::saturating_add(#stored, #magnitude)),
            quote!(#u64_::checked_sub(#len, #magnitude)),
        ),
        _ => (
            quote!(#u64_::saturating_sub(#stored, #magnitude)),
            quote!(#u64_::checked_add(#len, #magnitude)),
        ),
    };
    let (pattern, value) = if width < 8 {
        let max = unsigned_max(width);
        (
            quote!(#option::Some(#raw) if #raw <= #max),
            quote!(#raw as #t),
        )
    } else {
        (quote!(#option::Some(#raw)), quote!(#raw))
    };
    let store = if adjust == 0 && width == 8 {
        quote! { self.#field = #len; }
    } else if adjust == 0 {
        let max = unsigned_max(width);
        quote! {
            if #len > #max { #out_of_range; }
            self.#field = #len as #t;
        }
    } else {
        quote! {
            self.#field = match #to_raw {
                #pattern => #value,
                _ => #out_of_range,
            };
        }
    };
    (
        quote!(#option::Some(#get)),
        quote! {
            fn set_body_len(&mut self, #len: #u64_) -> #result<(), #core::HeaderError> {
                #store
                #result::Ok(())
            }
        },
    )
}

/// An impl that keeps the rest of the user's code compiling (without follow-up errors) while
/// they fix the error reported next to it.
pub(crate) fn fallback(ident: &Ident) -> TokenStream {
    let core = quote!(::meta_protocol_core);
    let result = quote!(::core::result::Result);
    let option = quote!(::core::option::Option);
    let u8_ = primitive("u8");
    let u64_ = primitive("u64");
    quote! {
        #[automatically_derived]
        impl #core::BinaryHeader for #ident {
            const SIZE: ::core::primitive::usize = 0;
            const METADATA_KEYS: &'static [&'static ::core::primitive::str] = &[];
            fn peek(_: &[#u8_]) -> #result<#option<Self>, #core::HeaderError> {
                #result::Ok(#option::None)
            }
            fn write(&self, _: &mut #core::__private::BytesMut) {}
            fn body_len(&self) -> #option<#u64_> {
                #option::None
            }
            fn set_body_len(&mut self, _: #u64_) -> #result<(), #core::HeaderError> {
                #result::Err(#core::HeaderError::NoField("body length"))
            }
            fn correlation(&self) -> #option<#u64_> {
                #option::None
            }
            fn set_correlation(&mut self, _: #u64_) -> #result<(), #core::HeaderError> {
                #result::Err(#core::HeaderError::NoField("correlation"))
            }
            fn to_metadata(&self, _: &mut #core::Metadata) {}
            fn apply_metadata(&mut self, _: &#core::Metadata) -> #result<(), #core::HeaderError> {
                #result::Ok(())
            }
        }
    }
}
