//! Phase 1: the derive input and its `#[header(...)]` / `#[field(...)]` attributes, read into
//! an [`Input`]. This phase checks syntax only: that the item is a struct with named fields,
//! that every key is known and appears once, that each value is the right kind of literal, and
//! that every field type is supported. Whether the keys make sense together is
//! [`validate`](crate::validate)'s job.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::{Attribute, Data, DeriveInput, Expr, Fields, Ident, Lit, Meta, Token, Type, UnOp};

use crate::errors::Errors;

/// Byte order of an integer field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Endian {
    Big,
    Little,
}

/// A supported field type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FieldType {
    /// `u8`..`u64` / `i8`..`i64`.
    Int(IntType),
    /// `bool` (a one-bit `bits` flag).
    Bool,
    /// `[u8; N]`.
    Bytes(usize),
}

/// An integer type: signedness and size in bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct IntType {
    pub(crate) signed: bool,
    pub(crate) bytes: usize,
}

impl IntType {
    /// The Rust name of the type, e.g. `u32`.
    pub(crate) fn name(self) -> String {
        format!("{}{}", if self.signed { 'i' } else { 'u' }, self.bytes * 8)
    }
}

impl FieldType {
    /// How the type is written in messages.
    pub(crate) fn describe(self) -> String {
        match self {
            FieldType::Int(t) => format!("`{}`", t.name()),
            FieldType::Bool => "`bool`".to_owned(),
            FieldType::Bytes(n) => format!("`[u8; {n}]`"),
        }
    }
}

/// The literal given to `magic`.
pub(crate) enum MagicLit {
    /// `magic = 0xdabb` (possibly negative for signed fields).
    Int(i128),
    /// `magic = b"PRPC"`.
    Bytes(Vec<u8>),
}

/// One `key` or `key = value` inside an attribute: its value, and the tokens to point at.
pub(crate) struct Arg<T> {
    pub(crate) value: T,
    /// The key alone (`offset`).
    pub(crate) key: TokenStream,
    /// The whole `key = value`.
    pub(crate) whole: TokenStream,
}

/// The struct, as the attributes describe it.
pub(crate) struct Input<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) size: Option<Arg<u64>>,
    pub(crate) endian: Option<Arg<Endian>>,
    pub(crate) fields: Vec<Field<'a>>,
}

/// One field and its `#[field(...)]` keys.
pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    /// The field name without `r#`, as reported in errors and used as the default metadata key.
    pub(crate) name: String,
    pub(crate) ty: FieldType,
    /// The `#[field(...)]` attribute, to point at when a required key is missing.
    pub(crate) attr: TokenStream,
    pub(crate) offset: Arg<u64>,
    pub(crate) width: Option<Arg<u64>>,
    pub(crate) endian: Option<Arg<Endian>>,
    pub(crate) magic: Option<Arg<MagicLit>>,
    pub(crate) bits: Option<Arg<u8>>,
    pub(crate) meta: Option<Arg<String>>,
    pub(crate) correlation: Option<Arg<()>>,
    pub(crate) body_len: Option<Arg<()>>,
    pub(crate) adjust: Option<Arg<i64>>,
}

const HEADER_KEYS: &str = "`size` or `endian`";
const FIELD_KEYS: &str =
    "`offset`, `width`, `endian`, `magic`, `bits`, `meta`, `correlation`, `body_len` or `adjust`";

/// Reads `input`; all syntax errors at once.
pub(crate) fn parse(input: &DeriveInput) -> syn::Result<Input<'_>> {
    let named = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => named,
            Fields::Unnamed(_) | Fields::Unit => {
                return Err(syn::Error::new_spanned(
                    &input.ident,
                    "BinaryHeader needs a struct with named fields (`struct H { a: u8 }`), \
                     not a tuple or unit struct",
                ));
            }
        },
        Data::Enum(data) => {
            return Err(syn::Error::new_spanned(
                data.enum_token,
                "BinaryHeader can only be derived for a struct with named fields, not an enum",
            ));
        }
        Data::Union(data) => {
            return Err(syn::Error::new_spanned(
                data.union_token,
                "BinaryHeader can only be derived for a struct with named fields, not a union",
            ));
        }
    };
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "BinaryHeader does not support generic structs: a header has one fixed layout",
        ));
    }

    let mut errors = Errors::default();
    let mut size = None;
    let mut endian = None;
    for attr in &input.attrs {
        if attr.path().is_ident("field") {
            errors.at(
                attr,
                "`#[field(...)]` goes on the fields; the struct takes \
                 `#[header(size = N, endian = \"big\")]`",
            );
            continue;
        }
        if !attr.path().is_ident("header") {
            continue;
        }
        for item in args(attr, "#[header(size = N, endian = \"big\")]", &mut errors) {
            let Some(key) = key_of(&item, "header", HEADER_KEYS, &mut errors) else {
                continue;
            };
            match key.as_str() {
                "size" => {
                    let v = value_of(&item, &mut errors).and_then(|e| {
                        unsigned(e, "`size` must be an integer literal", &mut errors)
                    });
                    keep(&mut size, &item, v, &mut errors);
                }
                "endian" => {
                    let v = value_of(&item, &mut errors).and_then(|e| endian_of(e, &mut errors));
                    keep(&mut endian, &item, v, &mut errors);
                }
                _ => errors.at(
                    item.path(),
                    format!("unknown key `{key}` in `#[header(...)]`; expected {HEADER_KEYS}"),
                ),
            }
        }
    }

    let mut fields = Vec::with_capacity(named.named.len());
    for field in &named.named {
        if let Some(f) = parse_field(field, &mut errors) {
            fields.push(f);
        }
    }
    if named.named.is_empty() {
        errors.at(
            &input.ident,
            "a BinaryHeader needs at least one field with `#[field(offset = N)]`",
        );
    }
    errors.finish(Input {
        ident: &input.ident,
        size,
        endian,
        fields,
    })
}

/// Reads one field; `None` when it had errors (already reported).
fn parse_field<'a>(field: &'a syn::Field, errors: &mut Errors) -> Option<Field<'a>> {
    let ident = field.ident.as_ref()?;
    let name = ident.unraw().to_string();
    let reported = errors.count();

    let ty = field_type(&field.ty);
    if ty.is_none() {
        errors.at(
            &field.ty,
            "unsupported BinaryHeader field type; use u8, u16, u32, u64, i8, i16, i32, i64, \
             bool (with `bits`) or [u8; N]",
        );
    }

    let mut attrs = TokenStream::new();
    let mut keys = FieldArgs::default();
    for attr in &field.attrs {
        if attr.path().is_ident("header") {
            errors.at(
                attr,
                "`#[header(...)]` goes on the struct; fields take `#[field(offset = N, ...)]`",
            );
        } else if attr.path().is_ident("field") {
            attr.meta.to_tokens(&mut attrs);
            for item in args(attr, "#[field(offset = N, ...)]", errors) {
                keys.read(&item, &name, errors);
            }
        }
    }

    if attrs.is_empty() {
        errors.at(
            ident,
            format!(
                "field `{name}` has no `#[field(offset = N, ...)]` attribute; every field of a \
                 BinaryHeader is part of the layout"
            ),
        );
        return None;
    }
    let had_error = errors.count() != reported;
    let Some(offset) = keys.offset else {
        // After another mistake in the same attribute (say a misspelt `ofset`), this one would
        // only repeat it.
        if !had_error {
            errors.at(
                &attrs,
                format!("field `{name}` needs `offset = N` (its byte offset in the header)"),
            );
        }
        return None;
    };
    if had_error {
        return None;
    }
    Some(Field {
        ident,
        name,
        ty: ty?,
        attr: attrs,
        offset,
        width: keys.width,
        endian: keys.endian,
        magic: keys.magic,
        bits: keys.bits,
        meta: keys.meta,
        correlation: keys.correlation,
        body_len: keys.body_len,
        adjust: keys.adjust,
    })
}

/// The keys of one field's `#[field(...)]` attributes, as they are read.
#[derive(Default)]
struct FieldArgs {
    offset: Option<Arg<u64>>,
    width: Option<Arg<u64>>,
    endian: Option<Arg<Endian>>,
    magic: Option<Arg<MagicLit>>,
    bits: Option<Arg<u8>>,
    meta: Option<Arg<String>>,
    correlation: Option<Arg<()>>,
    body_len: Option<Arg<()>>,
    adjust: Option<Arg<i64>>,
}

impl FieldArgs {
    /// Reads one `key` or `key = value` item of the field called `name`.
    fn read(&mut self, item: &Meta, name: &str, errors: &mut Errors) {
        let Some(key) = key_of(item, "field", FIELD_KEYS, errors) else {
            return;
        };
        match key.as_str() {
            "offset" => {
                let v = value_of(item, errors)
                    .and_then(|e| unsigned(e, "`offset` must be an integer literal", errors));
                keep(&mut self.offset, item, v, errors);
            }
            "width" => {
                let v = value_of(item, errors).and_then(|e| {
                    unsigned(e, "`width` must be an integer literal (bytes)", errors)
                });
                keep(&mut self.width, item, v, errors);
            }
            "endian" => {
                let v = value_of(item, errors).and_then(|e| endian_of(e, errors));
                keep(&mut self.endian, item, v, errors);
            }
            "magic" => {
                let v = value_of(item, errors).and_then(|e| magic_of(e, errors));
                keep(&mut self.magic, item, v, errors);
            }
            "bits" => {
                let v = value_of(item, errors).and_then(|e| {
                    let v = unsigned(
                        e,
                        "`bits` must be an integer literal mask, e.g. 0x80",
                        errors,
                    )?;
                    narrow(
                        v,
                        e,
                        "`bits` is a mask within one byte: 0x01..=0xff",
                        errors,
                    )
                });
                keep(&mut self.bits, item, v, errors);
            }
            "meta" => {
                let v = meta_of(item, name, errors);
                keep(&mut self.meta, item, v, errors);
            }
            "correlation" => {
                let v = flag(item, errors);
                keep(&mut self.correlation, item, v, errors);
            }
            "body_len" => {
                let v = flag(item, errors);
                keep(&mut self.body_len, item, v, errors);
            }
            "adjust" => {
                let v = value_of(item, errors).and_then(|e| {
                    let v = signed(e, "`adjust` must be an integer literal, e.g. -16", errors)?;
                    narrow(v, e, "`adjust` must fit in an i64", errors)
                });
                keep(&mut self.adjust, item, v, errors);
            }
            _ => errors.at(
                item.path(),
                format!("unknown key `{key}` in `#[field(...)]`; expected {FIELD_KEYS}"),
            ),
        }
    }
}

/// `meta` (the key is the field's `name`) or `meta = "key"`.
fn meta_of(item: &Meta, name: &str, errors: &mut Errors) -> Option<String> {
    match item {
        Meta::Path(_) => Some(name.to_owned()),
        Meta::NameValue(nv) => match lit_of(&nv.value) {
            Some(Lit::Str(s)) if s.value().is_empty() => {
                errors.at(s, "the metadata key must not be empty");
                None
            }
            Some(Lit::Str(s)) => Some(s.value()),
            _ => {
                errors.at(
                    &nv.value,
                    "`meta` takes a string key (`meta = \"key\"`) or nothing (`meta`: the key is \
                     the field name)",
                );
                None
            }
        },
        Meta::List(_) => {
            errors.at(item, "write `meta` or `meta = \"key\"`");
            None
        }
    }
}

/// `value` converted to a narrower type, or an error at `expr`.
fn narrow<T: TryFrom<V>, V>(
    value: V,
    expr: &Expr,
    message: &str,
    errors: &mut Errors,
) -> Option<T> {
    let narrowed = T::try_from(value).ok();
    if narrowed.is_none() {
        errors.at(expr, message);
    }
    narrowed
}

/// Classifies a field type; `None` when it is not supported.
fn field_type(ty: &Type) -> Option<FieldType> {
    match ty {
        Type::Group(g) => field_type(&g.elem),
        Type::Paren(p) => field_type(&p.elem),
        Type::Path(p) if p.qself.is_none() => {
            let ident = p.path.get_ident()?;
            let (signed, bytes) = match ident.to_string().as_str() {
                "u8" => (false, 1),
                "u16" => (false, 2),
                "u32" => (false, 4),
                "u64" => (false, 8),
                "i8" => (true, 1),
                "i16" => (true, 2),
                "i32" => (true, 4),
                "i64" => (true, 8),
                "bool" => return Some(FieldType::Bool),
                _ => return None,
            };
            Some(FieldType::Int(IntType { signed, bytes }))
        }
        Type::Array(a) => {
            if !matches!(
                field_type(&a.elem),
                Some(FieldType::Int(IntType {
                    signed: false,
                    bytes: 1
                }))
            ) {
                return None;
            }
            match lit_of(&a.len) {
                Some(Lit::Int(n)) => match n.base10_parse::<usize>() {
                    Ok(n) if n > 0 => Some(FieldType::Bytes(n)),
                    _ => None,
                },
                _ => None,
            }
        }
        _ => None,
    }
}

/// The comma-separated items of `attr`; reports a malformed attribute.
fn args(attr: &Attribute, usage: &str, errors: &mut Errors) -> Punctuated<Meta, Token![,]> {
    match &attr.meta {
        Meta::List(list) => {
            match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
                Ok(items) => items,
                Err(e) => {
                    errors.push(e);
                    Punctuated::new()
                }
            }
        }
        _ => {
            errors.at(attr, format!("expected `{usage}`"));
            Punctuated::new()
        }
    }
}

/// The key of `item` as a plain identifier.
fn key_of(item: &Meta, attr: &str, expected: &str, errors: &mut Errors) -> Option<String> {
    match item.path().get_ident() {
        Some(ident) => Some(ident.unraw().to_string()),
        None => {
            errors.at(
                item.path(),
                format!("unknown key in `#[{attr}(...)]`; expected {expected}"),
            );
            None
        }
    }
}

/// The value of a `key = value` item.
fn value_of<'m>(item: &'m Meta, errors: &mut Errors) -> Option<&'m Expr> {
    match item {
        Meta::NameValue(nv) => Some(&nv.value),
        _ => {
            let key = item.path().to_token_stream();
            errors.at(item, format!("expected `{key} = ...`"));
            None
        }
    }
}

/// A bare `key` item (no value).
fn flag(item: &Meta, errors: &mut Errors) -> Option<()> {
    if let Meta::Path(_) = item {
        return Some(());
    }
    let key = item.path().to_token_stream();
    errors.at(item, format!("`{key}` takes no value: write just `{key}`"));
    None
}

fn arg<T>(item: &Meta, value: T) -> Arg<T> {
    Arg {
        value,
        key: item.path().to_token_stream(),
        whole: item.to_token_stream(),
    }
}

/// Stores the value read for `item` (if it could be read), reporting a repeated key.
fn keep<T>(slot: &mut Option<Arg<T>>, item: &Meta, value: Option<T>, errors: &mut Errors) {
    let Some(value) = value else { return };
    if slot.is_some() {
        let key = item.path().to_token_stream();
        errors.at(item, format!("duplicate key `{key}`"));
    } else {
        *slot = Some(arg(item, value));
    }
}

/// The literal of an expression, looking through invisible groups (from `macro_rules!`).
fn lit_of(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(l) => Some(&l.lit),
        Expr::Group(g) => lit_of(&g.expr),
        _ => None,
    }
}

/// A non-negative integer literal.
fn unsigned(expr: &Expr, message: &str, errors: &mut Errors) -> Option<u64> {
    let value = signed(expr, message, errors)?;
    match u64::try_from(value) {
        Ok(v) => Some(v),
        Err(_) => {
            errors.at(expr, format!("{message}, from 0 to {}", u64::MAX));
            None
        }
    }
}

/// An integer literal, possibly negative (`-16` arrives either as a negated literal or as one
/// negative literal token).
fn signed(expr: &Expr, message: &str, errors: &mut Errors) -> Option<i128> {
    let (negative, inner) = match expr {
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => (true, &*u.expr),
        Expr::Group(g) => return signed(&g.expr, message, errors),
        e => (false, e),
    };
    match lit_of(inner) {
        Some(Lit::Int(i)) => match i.base10_parse::<i128>() {
            Ok(v) if negative => Some(-v),
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        _ => {
            errors.at(expr, message);
            None
        }
    }
}

fn endian_of(expr: &Expr, errors: &mut Errors) -> Option<Endian> {
    match lit_of(expr) {
        Some(Lit::Str(s)) if s.value() == "big" => Some(Endian::Big),
        Some(Lit::Str(s)) if s.value() == "little" => Some(Endian::Little),
        _ => {
            errors.at(expr, "`endian` must be \"big\" or \"little\"");
            None
        }
    }
}

fn magic_of(expr: &Expr, errors: &mut Errors) -> Option<MagicLit> {
    match lit_of(expr) {
        Some(Lit::ByteStr(b)) => Some(MagicLit::Bytes(b.value())),
        _ => signed(
            expr,
            "`magic` must be an integer literal (`magic = 0xdabb`) or a byte string \
             (`magic = b\"PRPC\"`)",
            errors,
        )
        .map(MagicLit::Int),
    }
}
