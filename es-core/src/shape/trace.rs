//! The tracer: a deserializer that answers every question a type's
//! `Deserialize` asks with a sample value, and writes the questions down.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use super::{Container, Format, Shape, ShapeError, Variant};

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
