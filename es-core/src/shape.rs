//! The serialized shape of a type, read from its `Deserialize`: field
//! names and types, nested types included, every variant of every enum.
//!
//! Snapshots record a fingerprint of their state's shape (a snapshot of
//! another shape is not used), and the schema lock
//! ([`schema::SchemaLock`](crate::schema::SchemaLock)) records each stored
//! event's shape. Both need the shape without a value of the type: the
//! tracer here plays a deserializer that answers every question serde's
//! derived code asks with a sample, writing down the questions — which are
//! the shape. Each enum is traced once per variant.
//!
//! ```
//! #[derive(serde::Deserialize)]
//! struct Account { owner: String, balance: u64, tags: Vec<Tag> }
//! #[derive(serde::Deserialize)]
//! enum Tag { Plain, Limit(u64) }
//!
//! let shape = es_core::shape::of::<Account>().unwrap();
//! assert_eq!(
//!     shape.to_string(),
//!     "Account\nAccount = struct { owner: str, balance: u64, tags: [Tag] }\nTag = enum { Plain, Limit(u64) }\n"
//! );
//! ```
//!
//! What it cannot see: a type whose `Deserialize` is written by hand to
//! accept anything (`deserialize_any`: `serde_json::Value`, untagged
//! enums, `#[serde(flatten)]`) is recorded as `any`; a type that refuses
//! every sample value fails to trace ([`ShapeError`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

/// The shape of one value: a primitive, a container of other shapes, or a
/// named type described in the [`Shape`]'s registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// `bool`, `u64`, `str`, ...: a primitive, by its serde name.
    Primitive(&'static str),
    /// `()`.
    Unit,
    /// An optional value.
    Option(Box<Format>),
    /// A sequence of values of one shape.
    Seq(Box<Format>),
    /// A tuple (or fixed-size array) of these shapes.
    Tuple(Vec<Format>),
    /// A map.
    Map(Box<Format>, Box<Format>),
    /// A named struct or enum, described in the registry.
    Named(&'static str),
    /// Anything (a hand-written `Deserialize` that accepts whatever comes).
    Any,
}

/// A named type's description.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Container {
    /// `struct S;`
    UnitStruct,
    /// `struct S(T);`
    NewtypeStruct(Format),
    /// `struct S(T, U);`
    TupleStruct(Vec<Format>),
    /// `struct S { a: T }`, fields in order.
    Struct(Vec<(&'static str, Format)>),
    /// `enum E { .. }`, variants in order.
    Enum(Vec<(&'static str, Variant)>),
}

/// One variant of an enum.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// `V`
    Unit,
    /// `V(T)`
    Newtype(Format),
    /// `V(T, U)`
    Tuple(Vec<Format>),
    /// `V { a: T }`
    Struct(Vec<(&'static str, Format)>),
    /// Not reached by the tracer (it should not happen).
    Unexplored,
}

/// A type's shape: its own format and every named type it contains.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape {
    /// The type's format.
    pub root: Format,
    /// The named types, by name.
    pub registry: BTreeMap<&'static str, Container>,
}

/// Why a type could not be traced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot trace the serialized shape of `{type_name}`: {message}")]
pub struct ShapeError {
    /// The type.
    pub type_name: &'static str,
    /// What its `Deserialize` said.
    pub message: String,
}

/// The shape of `T`, from its `Deserialize`.
pub fn of<T: DeserializeOwned>() -> Result<Shape, ShapeError> {
    let fail = |e: Error| ShapeError {
        type_name: std::any::type_name::<T>(),
        message: e.0,
    };
    let mut tracer = Tracer::default();
    // Each run takes the next unexplored variant of each enum it meets;
    // runs go on until every variant of every enum has been seen (a type
    // with n enums of at most k variants takes at most n * k runs).
    let mut root = None;
    for _ in 0..10_000 {
        let mut run = Run {
            tracer: &mut tracer,
            stack: Vec::new(),
            shallow: 0,
        };
        let (format, _) = run.trace::<T>().map_err(fail)?;
        root = Some(format);
        if !tracer.unexplored() {
            break;
        }
    }
    let root = root.unwrap_or(Format::Any);
    let mut registry = tracer.containers;
    for (name, progress) in tracer.enums {
        registry.insert(name, Container::Enum(progress.variants));
    }
    Ok(Shape { root, registry })
}

/// A 64-bit fingerprint of `T`'s shape (FNV-1a of its rendering), or `None`
/// if it cannot be traced.
pub fn fingerprint<T: DeserializeOwned>() -> Option<u64> {
    of::<T>().ok().map(|s| s.fingerprint())
}

impl Shape {
    /// A 64-bit fingerprint of this shape's [structure](Shape::structure):
    /// FNV-1a of it, never 0 (0 stands for "no fingerprint" where one is
    /// stored). Renaming a Rust type does not change it; renaming, adding or
    /// retyping a field or a variant does.
    pub fn fingerprint(&self) -> u64 {
        let hash = self.structure().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        hash.max(1)
    }

    /// What is stored, without the Rust type names serde does not store:
    /// named types written out where they are used, one field or variant a
    /// line, nested ones indented; a type inside itself is `<recursive>`.
    pub fn structure(&self) -> String {
        let mut out = String::new();
        self.write_format(&mut out, &self.root, 0, &mut Vec::new());
        out
    }

    fn write_format(&self, out: &mut String, format: &Format, depth: usize, seen: &mut Vec<&'static str>) {
        match format {
            Format::Primitive(p) => out.push_str(p),
            Format::Unit => out.push_str("()"),
            Format::Any => out.push_str("any"),
            Format::Option(inner) => {
                self.write_format(out, inner, depth, seen);
                out.push('?');
            }
            Format::Seq(inner) => {
                out.push('[');
                self.write_format(out, inner, depth, seen);
                out.push(']');
            }
            Format::Tuple(items) => self.write_tuple(out, items, depth, seen),
            Format::Map(k, v) => {
                out.push('{');
                self.write_format(out, k, depth, seen);
                out.push_str(": ");
                self.write_format(out, v, depth, seen);
                out.push('}');
            }
            Format::Named(name) => {
                if seen.contains(name) {
                    out.push_str("<recursive>");
                    return;
                }
                let Some(container) = self.registry.get(name) else {
                    out.push_str("any");
                    return;
                };
                seen.push(name);
                self.write_container(out, container, depth, seen);
                seen.pop();
            }
        }
    }

    fn write_tuple(&self, out: &mut String, items: &[Format], depth: usize, seen: &mut Vec<&'static str>) {
        out.push('(');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            self.write_format(out, item, depth, seen);
        }
        out.push(')');
    }

    fn write_fields(
        &self,
        out: &mut String,
        fields: &[(&'static str, Format)],
        depth: usize,
        seen: &mut Vec<&'static str>,
    ) {
        if fields.is_empty() {
            out.push_str("{}");
            return;
        }
        out.push('{');
        for (name, format) in fields {
            newline(out, depth + 1);
            out.push_str(name);
            out.push_str(": ");
            self.write_format(out, format, depth + 1, seen);
        }
        newline(out, depth);
        out.push('}');
    }

    fn write_container(&self, out: &mut String, container: &Container, depth: usize, seen: &mut Vec<&'static str>) {
        match container {
            Container::UnitStruct => out.push_str("struct"),
            Container::NewtypeStruct(inner) => {
                out.push_str("struct(");
                self.write_format(out, inner, depth, seen);
                out.push(')');
            }
            Container::TupleStruct(items) => {
                out.push_str("struct");
                self.write_tuple(out, items, depth, seen);
            }
            Container::Struct(fields) => {
                out.push_str("struct ");
                self.write_fields(out, fields, depth, seen);
            }
            Container::Enum(variants) => {
                out.push_str("enum {");
                for (name, variant) in variants {
                    newline(out, depth + 1);
                    out.push_str(name);
                    match variant {
                        Variant::Unit => {}
                        Variant::Newtype(inner) => {
                            out.push('(');
                            self.write_format(out, inner, depth + 1, seen);
                            out.push(')');
                        }
                        Variant::Tuple(items) => self.write_tuple(out, items, depth + 1, seen),
                        Variant::Struct(fields) => {
                            out.push(' ');
                            self.write_fields(out, fields, depth + 1, seen);
                        }
                        Variant::Unexplored => out.push_str("(?)"),
                    }
                }
                newline(out, depth);
                out.push('}');
            }
        }
    }
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Renders the root format, then one line per named type, sorted by name.
impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.root)?;
        for (name, container) in &self.registry {
            writeln!(f, "{name} = {container}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Primitive(p) => f.write_str(p),
            Format::Unit => f.write_str("()"),
            Format::Option(inner) => write!(f, "{inner}?"),
            Format::Seq(inner) => write!(f, "[{inner}]"),
            Format::Tuple(items) => write!(f, "({})", List(items)),
            Format::Map(k, v) => write!(f, "{{{k}: {v}}}"),
            Format::Named(name) => f.write_str(name),
            Format::Any => f.write_str("any"),
        }
    }
}

struct List<'a>(&'a [Format]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

struct Fields<'a>(&'a [(&'static str, Format)]);

impl fmt::Display for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, format)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}: {format}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Container::UnitStruct => f.write_str("struct"),
            Container::NewtypeStruct(inner) => write!(f, "struct({inner})"),
            Container::TupleStruct(items) => write!(f, "struct({})", List(items)),
            Container::Struct(fields) => write!(f, "struct {{ {} }}", Fields(fields)),
            Container::Enum(variants) => {
                f.write_str("enum { ")?;
                for (i, (name, variant)) in variants.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match variant {
                        Variant::Unit => write!(f, "{name}")?,
                        Variant::Newtype(inner) => write!(f, "{name}({inner})")?,
                        Variant::Tuple(items) => write!(f, "{name}({})", List(items))?,
                        Variant::Struct(fields) => write!(f, "{name} {{ {} }}", Fields(fields))?,
                        Variant::Unexplored => write!(f, "{name}(?)")?,
                    }
                }
                f.write_str(" }")
            }
        }
    }
}

/// What the tracer learned over all runs.
#[derive(Default)]
struct Tracer {
    containers: BTreeMap<&'static str, Container>,
    enums: BTreeMap<&'static str, EnumProgress>,
}

struct EnumProgress {
    variants: Vec<(&'static str, Variant)>,
}

impl Tracer {
    fn unexplored(&self) -> bool {
        self.enums
            .values()
            .any(|e| e.variants.iter().any(|(_, v)| *v == Variant::Unexplored))
    }
}

/// One run of the tracer over the type.
struct Run<'t> {
    tracer: &'t mut Tracer,
    /// The named types being traced, to tell recursion.
    stack: Vec<&'static str>,
    /// How many named types deep it is inside a type it is already
    /// tracing: there it only makes a value to end the recursion (options
    /// are `None`, sequences and maps empty) and records nothing.
    shallow: usize,
}

#[derive(Debug)]
struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// How deep a recursive type may nest before the tracer gives up (a type
/// with no way to end, such as an enum whose every variant recurses).
const MAX_SHALLOW: usize = 64;

impl Run<'_> {
    fn trace<T: DeserializeOwned>(&mut self) -> Result<(Format, T), Error> {
        let mut format = Format::Any;
        let value = T::deserialize(Probe {
            run: self,
            out: &mut format,
        })?;
        Ok((format, value))
    }

    fn trace_seed<'de, S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<(Format, S::Value), Error> {
        let mut format = Format::Any;
        let value = seed.deserialize(Probe {
            run: self,
            out: &mut format,
        })?;
        Ok((format, value))
    }

    /// Enters named type `name`; returns whether to record it (it is not
    /// already being traced further out).
    fn enter(&mut self, name: &'static str) -> Result<bool, Error> {
        let record = self.shallow == 0 && !self.stack.contains(&name);
        if !record {
            self.shallow += 1;
            if self.shallow > MAX_SHALLOW {
                return Err(Error(format!("`{name}` nests in itself with no way to end")));
            }
        }
        self.stack.push(name);
        Ok(record)
    }

    fn leave(&mut self, recorded: bool) {
        self.stack.pop();
        if !recorded {
            self.shallow -= 1;
        }
    }
}

/// The deserializer of one value: records its format in `out`.
struct Probe<'r, 't> {
    run: &'r mut Run<'t>,
    out: &'r mut Format,
}

macro_rules! primitive {
    ($($method:ident => $name:literal, $visit:ident($sample:expr);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                *self.out = Format::Primitive($name);
                visitor.$visit($sample)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Probe<'_, '_> {
    type Error = Error;

    primitive! {
        deserialize_bool => "bool", visit_bool(false);
        deserialize_i8 => "i8", visit_i8(1);
        deserialize_i16 => "i16", visit_i16(1);
        deserialize_i32 => "i32", visit_i32(1);
        deserialize_i64 => "i64", visit_i64(1);
        deserialize_i128 => "i128", visit_i128(1);
        deserialize_u8 => "u8", visit_u8(1);
        deserialize_u16 => "u16", visit_u16(1);
        deserialize_u32 => "u32", visit_u32(1);
        deserialize_u64 => "u64", visit_u64(1);
        deserialize_u128 => "u128", visit_u128(1);
        deserialize_f32 => "f32", visit_f32(1.0);
        deserialize_f64 => "f64", visit_f64(1.0);
        deserialize_char => "char", visit_char('x');
        deserialize_str => "str", visit_str("x");
        deserialize_string => "str", visit_str("x");
        deserialize_bytes => "bytes", visit_bytes(&[0; 16]);
        deserialize_byte_buf => "bytes", visit_bytes(&[0; 16]);
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        *self.out = Format::Any;
        visitor.visit_unit()
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        *self.out = Format::Any;
        visitor.visit_unit()
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        *self.out = Format::Unit;
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.run.shallow > 0 {
            return visitor.visit_none();
        }
        let mut inner = Format::Any;
        let value = visitor.visit_some(Probe {
            run: &mut *self.run,
            out: &mut inner,
        })?;
        *self.out = Format::Option(Box::new(inner));
        Ok(value)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut element = Format::Any;
        let wanted = usize::from(self.run.shallow == 0);
        let value = visitor.visit_seq(Elements {
            run: &mut *self.run,
            formats: &mut std::slice::from_mut(&mut element)[..wanted],
            next: 0,
        })?;
        *self.out = Format::Seq(Box::new(element));
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        let mut formats = vec![Format::Any; len];
        let value = visitor.visit_seq(Elements {
            run: &mut *self.run,
            formats: &mut formats,
            next: 0,
        })?;
        *self.out = Format::Tuple(formats);
        Ok(value)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (mut key, mut value_format) = (Format::Any, Format::Any);
        let shallow = self.run.shallow > 0;
        let value = visitor.visit_map(Entry {
            run: &mut *self.run,
            key: &mut key,
            value: &mut value_format,
            done: shallow,
        })?;
        *self.out = Format::Map(Box::new(key), Box::new(value_format));
        Ok(value)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.run.tracer.containers.insert(name, Container::UnitStruct);
        *self.out = Format::Named(name);
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Error> {
        let record = self.run.enter(name)?;
        let mut inner = Format::Any;
        let value = visitor.visit_newtype_struct(Probe {
            run: &mut *self.run,
            out: &mut inner,
        });
        self.run.leave(record);
        let value = value?;
        if record {
            self.run.tracer.containers.insert(name, Container::NewtypeStruct(inner));
        }
        *self.out = Format::Named(name);
        Ok(value)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let record = self.run.enter(name)?;
        let mut formats = vec![Format::Any; len];
        let value = visitor.visit_seq(Elements {
            run: &mut *self.run,
            formats: &mut formats,
            next: 0,
        });
        self.run.leave(record);
        let value = value?;
        if record {
            self.run.tracer.containers.insert(name, Container::TupleStruct(formats));
        }
        *self.out = Format::Named(name);
        Ok(value)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let record = self.run.enter(name)?;
        let mut formats = vec![Format::Any; fields.len()];
        let value = visitor.visit_map(StructFields {
            run: &mut *self.run,
            fields,
            formats: &mut formats,
            next: 0,
        });
        self.run.leave(record);
        let value = value?;
        if record {
            let described = fields.iter().copied().zip(formats).collect();
            self.run.tracer.containers.insert(name, Container::Struct(described));
        }
        *self.out = Format::Named(name);
        Ok(value)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let record = self.run.enter(name)?;
        let progress = self.run.tracer.enums.entry(name).or_insert_with(|| EnumProgress {
            variants: variants.iter().map(|v| (*v, Variant::Unexplored)).collect(),
        });
        // Recording: the next variant not seen yet. Inside itself: a unit
        // variant where there is one (the way out), else the first.
        let index = if record {
            progress.variants.iter().position(|(_, v)| *v == Variant::Unexplored)
        } else {
            progress.variants.iter().position(|(_, v)| *v == Variant::Unit)
        }
        .unwrap_or(0);
        let mut variant = Variant::Unexplored;
        let value = visitor.visit_enum(Choice {
            run: &mut *self.run,
            name: variants.get(index).copied().unwrap_or(""),
            out: &mut variant,
        });
        self.run.leave(record);
        let value = value?;
        if record
            && let Some(progress) = self.run.tracer.enums.get_mut(name)
            && let Some(slot) = progress.variants.get_mut(index)
        {
            slot.1 = variant;
        }
        *self.out = Format::Named(name);
        Ok(value)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        *self.out = Format::Primitive("str");
        visitor.visit_str("x")
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence or tuple: one per format.
struct Elements<'r, 't> {
    run: &'r mut Run<'t>,
    formats: &'r mut [Format],
    next: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        let Some(slot) = self.formats.get_mut(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        let (format, value) = self.run.trace_seed(seed)?;
        *slot = format;
        Ok(Some(value))
    }
}

/// The one entry of a map.
struct Entry<'r, 't> {
    run: &'r mut Run<'t>,
    key: &'r mut Format,
    value: &'r mut Format,
    done: bool,
}

impl<'de> de::MapAccess<'de> for Entry<'_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        let (format, key) = self.run.trace_seed(seed)?;
        *self.key = format;
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (format, value) = self.run.trace_seed(seed)?;
        *self.value = format;
        Ok(value)
    }
}

/// The fields of a struct, in order.
struct StructFields<'r, 't> {
    run: &'r mut Run<'t>,
    fields: &'static [&'static str],
    formats: &'r mut [Format],
    next: usize,
}

impl<'de> de::MapAccess<'de> for StructFields<'_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        match self.fields.get(self.next) {
            Some(field) => seed.deserialize(field.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let i = self.next;
        self.next += 1;
        let (format, value) = self.run.trace_seed(seed)?;
        if let Some(slot) = self.formats.get_mut(i) {
            *slot = format;
        }
        Ok(value)
    }
}

/// The variant an enum's run explores.
struct Choice<'r, 't> {
    run: &'r mut Run<'t>,
    name: &'static str,
    out: &'r mut Variant,
}

impl<'de, 'r, 't> de::EnumAccess<'de> for Choice<'r, 't> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let tag = seed.deserialize(self.name.into_deserializer())?;
        Ok((tag, self))
    }
}

impl<'de> de::VariantAccess<'de> for Choice<'_, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        *self.out = Variant::Unit;
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        let (format, value) = self.run.trace_seed(seed)?;
        *self.out = Variant::Newtype(format);
        Ok(value)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        let mut formats = vec![Format::Any; len];
        let value = visitor.visit_seq(Elements {
            run: &mut *self.run,
            formats: &mut formats,
            next: 0,
        })?;
        *self.out = Variant::Tuple(formats);
        Ok(value)
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value, Error> {
        let mut formats = vec![Format::Any; fields.len()];
        let value = visitor.visit_map(StructFields {
            run: &mut *self.run,
            fields,
            formats: &mut formats,
            next: 0,
        })?;
        *self.out = Variant::Struct(fields.iter().copied().zip(formats).collect());
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Node {
        label: String,
        next: Option<Box<Node>>,
        children: Vec<Node>,
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    enum Shape3 {
        A,
        B(u8),
        C(u8, bool),
        D { x: i64, y: Option<String> },
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Everything {
        n: u32,
        pair: (u8, char),
        map: HashMap<String, Vec<f64>>,
        shape: Shape3,
        shapes: Vec<Shape3>,
        id: Id,
        unit: (),
        bytes: [u8; 2],
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Id(u64);

    #[test]
    fn every_variant_and_nested_type_is_described() {
        let shape = of::<Everything>().unwrap();
        assert_eq!(
            shape.to_string(),
            "Everything\n\
             Everything = struct { n: u32, pair: (u8, char), map: {str: [f64]}, shape: Shape3, shapes: [Shape3], id: Id, unit: (), bytes: (u8, u8) }\n\
             Id = struct(u64)\n\
             Shape3 = enum { A, B(u8), C(u8, bool), D { x: i64, y: str? } }\n"
        );
    }

    #[test]
    fn recursive_types_are_described_once() {
        let shape = of::<Node>().unwrap();
        assert_eq!(
            shape.to_string(),
            "Node\nNode = struct { label: str, next: Node?, children: [Node] }\n"
        );
    }

    #[test]
    fn the_structure_writes_named_types_out_where_they_are_used() {
        let shape = of::<Node>().unwrap();
        assert_eq!(
            shape.structure(),
            "struct {\n  label: str\n  next: <recursive>?\n  children: [<recursive>]\n}"
        );
        let shape = of::<Shape3Holder>().unwrap();
        assert_eq!(
            shape.structure(),
            "struct {\n  shape: enum {\n    A\n    B(u8)\n    C(u8, bool)\n    D {\n      x: i64\n      y: str?\n    }\n  }\n  id: struct(u64)\n}"
        );
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Shape3Holder {
        shape: Shape3,
        id: Id,
    }

    #[test]
    fn renaming_a_type_keeps_the_fingerprint() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Before {
            balance: u64,
        }
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct After {
            balance: u64,
        }
        assert_eq!(fingerprint::<Before>(), fingerprint::<After>());
    }

    #[test]
    fn a_changed_field_type_changes_the_fingerprint() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct A {
            balance: u64,
        }
        mod other {
            #[derive(serde::Deserialize)]
            #[allow(dead_code)]
            pub(super) struct A {
                pub(super) balance: i64,
            }
        }
        assert_ne!(fingerprint::<A>(), fingerprint::<other::A>());
        assert_eq!(fingerprint::<A>(), fingerprint::<A>());
        assert!(fingerprint::<A>().is_some_and(|f| f != 0));
    }
}
