//! Phase 2: checks that the parsed keys make sense together and resolves them into a
//! [`Layout`]: every field's bytes, representation and role, and the header size.

use syn::Ident;

use crate::errors::Errors;
use crate::parse::{Arg, Endian, Field, FieldType, Input, IntType, MagicLit};

/// The checked layout that [`expand`](crate::expand) turns into code.
pub(crate) struct Layout<'a> {
    pub(crate) ident: &'a Ident,
    /// `SIZE`.
    pub(crate) size: usize,
    pub(crate) fields: Vec<Laid<'a>>,
    /// Index into `fields` of the correlation id.
    pub(crate) correlation: Option<usize>,
    /// Index into `fields` of the body length, and its `adjust`.
    pub(crate) body_len: Option<(usize, i64)>,
}

/// One field with its place in the header.
pub(crate) struct Laid<'a> {
    pub(crate) ident: &'a Ident,
    /// The name without `r#`, as reported in errors.
    pub(crate) name: String,
    pub(crate) offset: usize,
    pub(crate) repr: Repr,
    /// The metadata key.
    pub(crate) meta: Option<String>,
}

/// How a field is stored.
pub(crate) enum Repr {
    /// An integer of `width` bytes (at most the type's size).
    Int {
        ty: IntType,
        width: usize,
        endian: Endian,
        /// The constant, as the `width` bytes read unsigned.
        magic: Option<u64>,
    },
    /// The bits `mask` of one byte, as a `bool` (`flag`, one bit) or a `u8`.
    Bits { mask: u8, flag: bool },
    /// `[u8; len]`.
    Bytes { len: usize, magic: Option<Vec<u8>> },
}

impl Repr {
    /// Bytes the field occupies.
    pub(crate) fn len(&self) -> usize {
        match self {
            Repr::Int { width, .. } => *width,
            Repr::Bits { .. } => 1,
            Repr::Bytes { len, .. } => *len,
        }
    }
}

/// Largest unsigned value of `width` bytes.
pub(crate) fn unsigned_max(width: usize) -> u64 {
    if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    }
}

/// Smallest and largest signed value of `width` bytes.
pub(crate) fn signed_range(width: usize) -> (i64, i64) {
    if width >= 8 {
        (i64::MIN, i64::MAX)
    } else {
        let half = 1i64 << (8 * width - 1);
        (-half, half - 1)
    }
}

/// Checks `input`; all semantic errors at once.
pub(crate) fn validate<'a>(input: &Input<'a>) -> syn::Result<Layout<'a>> {
    let mut errors = Errors::default();
    let header_endian = input.endian.as_ref().map_or(Endian::Big, |e| e.value);

    let mut fields = Vec::with_capacity(input.fields.len());
    // Parallel to `fields`: the attributes each came from, to point errors at.
    let mut sources: Vec<&Field<'_>> = Vec::with_capacity(input.fields.len());
    let mut roles = Roles::default();
    for f in &input.fields {
        let reported = errors.count();
        let repr = representation(f, header_endian, &mut errors);
        let meta = meta_key(f, &mut errors);
        let Some(repr) = repr else { continue };
        roles.check(fields.len(), f, &repr, &mut errors);
        let offset = usize::try_from(f.offset.value)
            .ok()
            .filter(|o| o.checked_add(repr.len()).is_some());
        let Some(offset) = offset else {
            errors.at(&f.offset.whole, "`offset` is too large");
            continue;
        };
        if errors.count() == reported {
            fields.push(Laid {
                ident: f.ident,
                name: f.name.clone(),
                offset,
                repr,
                meta,
            });
            sources.push(f);
        }
    }
    // Layout checks only on fields that are each fine. (Stopping here also keeps the indices
    // in `roles` valid: they count only pushed fields while no error was reported.)
    errors.check()?;
    check_unique_keys(&fields, &sources, &mut errors);
    let size = header_size(input.size.as_ref(), &fields, &sources, &mut errors);
    check_overlaps(&fields, &sources, &mut errors);

    errors.finish(Layout {
        ident: input.ident,
        size,
        fields,
        correlation: roles.correlation.map(|(i, _)| i),
        body_len: roles.body_len.map(|(i, adjust, _)| (i, adjust)),
    })
}

/// The `correlation` and `body_len` fields seen so far: index, (`adjust`,) name.
#[derive(Default)]
struct Roles<'f> {
    correlation: Option<(usize, &'f str)>,
    body_len: Option<(usize, i64, &'f str)>,
}

impl<'f> Roles<'f> {
    /// Records the roles of field number `index`, checking its type and that no earlier field
    /// has the same role.
    fn check(&mut self, index: usize, f: &'f Field<'_>, repr: &Repr, errors: &mut Errors) {
        if let Some(arg) = &f.correlation {
            match (repr, self.correlation) {
                (Repr::Int { magic: None, .. }, None) => self.correlation = Some((index, &f.name)),
                (Repr::Int { magic: None, .. }, Some((_, first))) => errors.at(
                    &arg.key,
                    format!("only one field can be `correlation`; field `{first}` already is"),
                ),
                _ => errors.at(
                    &arg.key,
                    "`correlation` needs a whole integer field (not `bits`, `magic` or bytes)",
                ),
            }
        }
        let Some(arg) = &f.body_len else {
            if let Some(adjust) = &f.adjust {
                errors.at(
                    &adjust.whole,
                    "`adjust` only applies to the `body_len` field",
                );
            }
            return;
        };
        let unsigned = matches!(
            repr,
            Repr::Int {
                ty: IntType { signed: false, .. },
                magic: None,
                ..
            }
        );
        match (unsigned, self.body_len) {
            (true, None) => {
                let adjust = f.adjust.as_ref().map_or(0, |a| a.value);
                self.body_len = Some((index, adjust, &f.name));
            }
            (true, Some((_, _, first))) => errors.at(
                &arg.key,
                format!("only one field can be `body_len`; field `{first}` already is"),
            ),
            (false, _) => errors.at(
                &arg.key,
                "`body_len` needs a whole unsigned integer field (not signed, `bits`, `magic` or \
                 bytes)",
            ),
        }
    }
}

/// No two fields map the same metadata key.
fn check_unique_keys(fields: &[Laid<'_>], sources: &[&Field<'_>], errors: &mut Errors) {
    for (i, laid) in fields.iter().enumerate() {
        let (Some(key), Some(arg)) = (&laid.meta, &sources[i].meta) else {
            continue;
        };
        if let Some(first) = fields[..i].iter().find(|l| l.meta.as_ref() == Some(key)) {
            errors.at(
                &arg.whole,
                format!(
                    "metadata key `{key}` is already used by field `{}`",
                    first.name
                ),
            );
        }
    }
}

/// `size`, or the end of the furthest field; every field must end within it.
fn header_size(
    size: Option<&Arg<u64>>,
    fields: &[Laid<'_>],
    sources: &[&Field<'_>],
    errors: &mut Errors,
) -> usize {
    let end = |laid: &Laid<'_>| laid.offset + laid.repr.len();
    let Some(arg) = size else {
        return fields.iter().map(end).max().unwrap_or(0);
    };
    let size = usize::try_from(arg.value).unwrap_or(usize::MAX);
    for (laid, f) in fields.iter().zip(sources) {
        if end(laid) > size {
            errors.at(
                &f.offset.whole,
                format!(
                    "field `{}` occupies {}, past the end of the header (`size = {size}`)",
                    laid.name,
                    place(laid)
                ),
            );
        }
    }
    size
}

/// Fields do not share bytes, except `bits` fields of one byte with disjoint masks. Each field
/// is reported once, against the first earlier field it overlaps.
fn check_overlaps(fields: &[Laid<'_>], sources: &[&Field<'_>], errors: &mut Errors) {
    for (j, later) in fields.iter().enumerate() {
        let later_end = later.offset + later.repr.len();
        for earlier in &fields[..j] {
            let earlier_end = earlier.offset + earlier.repr.len();
            if later.offset >= earlier_end || earlier.offset >= later_end {
                continue;
            }
            let hint = match (&earlier.repr, &later.repr) {
                (Repr::Bits { mask: a, .. }, Repr::Bits { mask: b, .. }) if a & b == 0 => continue,
                (Repr::Bits { .. }, Repr::Bits { .. }) => {
                    "; fields sharing a byte need disjoint `bits` masks"
                }
                _ => "",
            };
            errors.at(
                &sources[j].offset.whole,
                format!(
                    "field `{}` ({}) overlaps field `{}` ({}){hint}",
                    later.name,
                    place(later),
                    earlier.name,
                    place(earlier)
                ),
            );
            break;
        }
    }
}

/// The field's representation, from its type and `width`, `endian`, `bits` and `magic`.
fn representation(f: &Field<'_>, header_endian: Endian, errors: &mut Errors) -> Option<Repr> {
    let reported = errors.count();
    let ty = f.ty.describe();
    let repr = match (f.ty, &f.bits) {
        (FieldType::Bool, None) => {
            errors.at(
                &f.attr,
                format!(
                    "field `{}` is a `bool`: a flag needs `bits = MASK` with one bit set, \
                     e.g. `bits = 0x80`",
                    f.name
                ),
            );
            return None;
        }
        (
            FieldType::Bool
            | FieldType::Int(IntType {
                signed: false,
                bytes: 1,
            }),
            Some(bits),
        ) => {
            let flag = f.ty == FieldType::Bool;
            bits_repr(f, bits, flag, errors)
        }
        (_, Some(bits)) => {
            errors.at(
                &bits.whole,
                format!(
                    "`bits` selects bits of one byte: the field must be `bool` (one bit) or \
                     `u8` (several bits), not {ty}"
                ),
            );
            return None;
        }
        (FieldType::Int(int), None) => {
            let width = match &f.width {
                None => int.bytes,
                Some(w) if (1..=int.bytes as u64).contains(&w.value) => w.value as usize,
                Some(w) => {
                    errors.at(
                        &w.whole,
                        format!(
                            "`width` must be between 1 and {} (bytes) for {ty}",
                            int.bytes
                        ),
                    );
                    int.bytes
                }
            };
            let magic = f
                .magic
                .as_ref()
                .and_then(|m| int_magic(m, int, width, errors));
            Repr::Int {
                ty: int,
                width,
                endian: f.endian.as_ref().map_or(header_endian, |e| e.value),
                magic,
            }
        }
        (FieldType::Bytes(len), None) => {
            if let Some(w) = &f.width {
                errors.at(
                    &w.whole,
                    format!("`width` applies to integer fields; a {ty} field is {len} bytes"),
                );
            }
            if let Some(e) = &f.endian {
                errors.at(
                    &e.whole,
                    format!("`endian` applies to integer fields, not {ty}"),
                );
            }
            let magic = match &f.magic {
                None => None,
                Some(Arg {
                    value: MagicLit::Bytes(bytes),
                    whole,
                    ..
                }) => {
                    if bytes.len() != len {
                        errors.at(
                            whole,
                            format!("`magic` has {} bytes but the field is {ty}", bytes.len()),
                        );
                    } else if len > 8 {
                        errors.at(whole, "a byte-string `magic` is at most 8 bytes long");
                    }
                    Some(bytes.clone())
                }
                Some(Arg {
                    value: MagicLit::Int(_),
                    whole,
                    ..
                }) => {
                    errors.at(
                        whole,
                        format!(
                            "a {ty} field takes a byte-string `magic`, e.g. `magic = b\"PRPC\"`"
                        ),
                    );
                    None
                }
            };
            Repr::Bytes { len, magic }
        }
    };
    (errors.count() == reported).then_some(repr)
}

/// Where a field lives, for error messages: `bytes 4..8`, `byte 2`, `bits 0x1f of byte 2`.
fn place(laid: &Laid<'_>) -> String {
    match laid.repr {
        Repr::Bits { mask, .. } => format!("bits {mask:#04x} of byte {}", laid.offset),
        _ if laid.repr.len() == 1 => format!("byte {}", laid.offset),
        _ => format!("bytes {}..{}", laid.offset, laid.offset + laid.repr.len()),
    }
}

/// A `bits` field: `flag` for `bool`, otherwise `u8`.
fn bits_repr(f: &Field<'_>, bits: &Arg<u8>, flag: bool, errors: &mut Errors) -> Repr {
    let mask = bits.value;
    if mask == 0 {
        errors.at(&bits.whole, "the `bits` mask must not be 0");
    } else if flag && mask.count_ones() != 1 {
        errors.at(
            &bits.whole,
            format!(
                "a `bool` flag is one bit, but `bits = {mask:#04x}` has {}; use a `u8` field for \
                 a multi-bit value",
                mask.count_ones()
            ),
        );
    } else if !is_contiguous(mask) {
        errors.at(
            &bits.whole,
            format!(
                "the `bits` mask {mask:#04x} must be one contiguous run of bits, e.g. 0x1f or 0x60"
            ),
        );
    }
    if let Some(w) = &f.width {
        if w.value != 1 {
            errors.at(
                &w.whole,
                "a `bits` field lives in one byte: `width` must be 1 or left out",
            );
        }
    }
    if let Some(e) = &f.endian {
        errors.at(
            &e.whole,
            "`endian` does not apply to a `bits` field (it lives in one byte)",
        );
    }
    if let Some(m) = &f.magic {
        errors.at(&m.whole, "`magic` cannot be combined with `bits`");
    }
    Repr::Bits { mask, flag }
}

/// True when the set bits of `mask` are one run, e.g. `0x1c` but not `0x14`.
fn is_contiguous(mask: u8) -> bool {
    let run = u16::from(mask >> mask.trailing_zeros());
    run & (run + 1) == 0
}

/// The constant of an integer `magic`, as `width` unsigned bytes.
fn int_magic(m: &Arg<MagicLit>, ty: IntType, width: usize, errors: &mut Errors) -> Option<u64> {
    let value = match &m.value {
        MagicLit::Int(v) => *v,
        MagicLit::Bytes(_) => {
            errors.at(
                &m.whole,
                format!(
                    "a byte-string `magic` needs a `[u8; N]` field; use an integer literal for `{}`",
                    ty.name()
                ),
            );
            return None;
        }
    };
    let fits = if ty.signed {
        let (min, max) = signed_range(width);
        (i128::from(min)..=i128::from(max)).contains(&value)
    } else {
        (0..=i128::from(unsigned_max(width))).contains(&value)
    };
    if !fits {
        let range = if ty.signed {
            let (min, max) = signed_range(width);
            format!("{min} to {max}")
        } else {
            format!("0 to {:#x}", unsigned_max(width))
        };
        let bytes = if width == 1 {
            "1 byte".to_owned()
        } else {
            format!("{width} bytes")
        };
        errors.at(
            &m.whole,
            format!(
                "`magic` value {value:#x} does not fit the field: {bytes} of `{}` hold {range}",
                ty.name()
            ),
        );
        return None;
    }
    // Two's complement, truncated to the field's bytes.
    Some((value as u64) & unsigned_max(width))
}

/// The metadata key of `f`, if it has a valid `meta`.
fn meta_key(f: &Field<'_>, errors: &mut Errors) -> Option<String> {
    let meta = f.meta.as_ref()?;
    if f.magic.is_some() {
        errors.at(
            &meta.key,
            "a `magic` field is a constant and cannot be metadata",
        );
        return None;
    }
    if let FieldType::Bytes(_) = f.ty {
        errors.at(
            &meta.key,
            "`meta` applies to integer and `bool` fields, not byte arrays",
        );
        return None;
    }
    Some(meta.value.clone())
}
