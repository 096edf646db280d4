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
    let mut correlation: Option<(usize, &Field<'_>)> = None;
    let mut body_len: Option<(usize, i64, &Field<'_>)> = None;

    for f in &input.fields {
        let reported = errors.count();
        let repr = representation(f, header_endian, &mut errors);
        let meta = meta_key(f, &mut errors);
        let Some(repr) = repr else { continue };
        let index = fields.len();

        if let Some(arg) = &f.correlation {
            match &repr {
                Repr::Int { magic: None, .. } => match correlation {
                    Some((_, first)) => errors.at(
                        &arg.key,
                        format!(
                            "only one field can be `correlation`; field `{}` already is",
                            first.name
                        ),
                    ),
                    None => correlation = Some((index, f)),
                },
                _ => errors.at(
                    &arg.key,
                    "`correlation` needs a whole integer field (not `bits`, `magic` or bytes)",
                ),
            }
        }
        if let Some(arg) = &f.body_len {
            let adjust = f.adjust.as_ref().map_or(0, |a| a.value);
            match &repr {
                Repr::Int {
                    ty: IntType { signed: false, .. },
                    magic: None,
                    ..
                } => match body_len {
                    Some((_, _, first)) => errors.at(
                        &arg.key,
                        format!(
                            "only one field can be `body_len`; field `{}` already is",
                            first.name
                        ),
                    ),
                    None => body_len = Some((index, adjust, f)),
                },
                _ => errors.at(
                    &arg.key,
                    "`body_len` needs a whole unsigned integer field (not signed, `bits`, \
                     `magic` or bytes)",
                ),
            }
        } else if let Some(adjust) = &f.adjust {
            errors.at(
                &adjust.whole,
                "`adjust` only applies to the `body_len` field",
            );
        }

        if errors.count() != reported {
            continue;
        }
        fields.push(Laid {
            ident: f.ident,
            name: f.name.clone(),
            offset: 0,
            repr,
            meta,
        });
        sources.push(f);
    }

    // Metadata keys are unique.
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

    // Byte positions.
    let mut end = 0usize;
    for (laid, f) in fields.iter_mut().zip(&sources) {
        match usize::try_from(f.offset.value)
            .ok()
            .filter(|o| o.checked_add(laid.repr.len()).is_some())
        {
            Some(offset) => {
                laid.offset = offset;
                end = end.max(offset + laid.repr.len());
            }
            None => errors.at(&f.offset.whole, "`offset` is too large"),
        }
    }
    errors.check()?;

    let size = match &input.size {
        None => end,
        Some(arg) => {
            let size = usize::try_from(arg.value).unwrap_or(usize::MAX);
            for (laid, f) in fields.iter().zip(&sources) {
                let field_end = laid.offset + laid.repr.len();
                if field_end > size {
                    errors.at(
                        &f.offset.whole,
                        format!(
                            "field `{}` occupies bytes {}..{field_end}, past the end of the \
                             header (`size = {size}`)",
                            laid.name, laid.offset
                        ),
                    );
                }
            }
            size
        }
    };

    // Overlaps: whole bytes, except `bits` fields of one byte with disjoint masks.
    for (j, later) in fields.iter().enumerate() {
        let later_end = later.offset + later.repr.len();
        for earlier in &fields[..j] {
            let earlier_end = earlier.offset + earlier.repr.len();
            if later.offset >= earlier_end || earlier.offset >= later_end {
                continue;
            }
            let message = match (&earlier.repr, &later.repr) {
                (Repr::Bits { mask: a, .. }, Repr::Bits { mask: b, .. }) => {
                    if a & b == 0 {
                        continue;
                    }
                    format!(
                        "field `{}` (bits {b:#04x} of byte {}) overlaps field `{}` (bits {a:#04x}); \
                         fields sharing a byte need disjoint `bits` masks",
                        later.name, later.offset, earlier.name
                    )
                }
                _ => format!(
                    "field `{}` (bytes {}..{later_end}) overlaps field `{}` (bytes {}..{earlier_end})",
                    later.name, later.offset, earlier.name, earlier.offset
                ),
            };
            errors.at(&sources[j].offset.whole, message);
            break;
        }
    }

    errors.finish(Layout {
        ident: input.ident,
        size,
        fields,
        correlation: correlation.map(|(i, _)| i),
        body_len: body_len.map(|(i, adjust, _)| (i, adjust)),
    })
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
        (FieldType::Bool | FieldType::Int(IntType { signed: false, bytes: 1 }), Some(bits)) => {
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
                            format!(
                                "`magic` has {} bytes but the field is {ty}",
                                bytes.len()
                            ),
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
                        format!("a {ty} field takes a byte-string `magic`, e.g. `magic = b\"PRPC\"`"),
                    );
                    None
                }
            };
            Repr::Bytes { len, magic }
        }
    };
    (errors.count() == reported).then_some(repr)
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
            format!("the `bits` mask {mask:#04x} must be one contiguous run of bits, e.g. 0x1f or 0x60"),
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
        let bits = width * 8;
        let kind = if ty.signed { "signed" } else { "unsigned" };
        errors.at(
            &m.whole,
            format!(
                "`magic` value {value:#x} does not fit the field: expected a {kind} {bits}-bit \
                 value for `{}`",
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
