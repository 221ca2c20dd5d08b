//! What a job's payload must be to round-trip through every store: checked at enqueue, so
//! a job that would be discarded at its first run (or refused by one store and accepted by
//! another) is refused before anything is written.
//!
//! serde_json writes NaN and ±infinity as `null`, which then does not deserialize into the
//! float it came from (or silently becomes `None`); it reads back at most
//! [`MAX_PAYLOAD_DEPTH`] levels of nesting, and PostgreSQL's `jsonb` refuses far deeper
//! documents with an error that looks like an outage. [`check`] walks the value as serde
//! sees it, before it is serialized, and stops at the first problem (so a hostile depth
//! never recurses further than the limit).

use serde::ser::{self, Serialize};

/// The deepest nesting of arrays and objects a payload may have: what serde_json reads back
/// (its recursion limit).
pub const MAX_PAYLOAD_DEPTH: usize = 127;

/// Why a payload cannot round-trip.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Problem {
    /// A NaN or infinite float, in the named field (or element) if known.
    NonFinite { value: f64, at: String },
    /// Nested deeper than [`MAX_PAYLOAD_DEPTH`].
    TooDeep,
    /// The value's own `Serialize` failed.
    Custom(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NonFinite { value, at } => write!(f, "{value} at {at}"),
            Problem::TooDeep => write!(f, "nested deeper than {MAX_PAYLOAD_DEPTH} levels"),
            Problem::Custom(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Problem {}

impl ser::Error for Problem {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Problem::Custom(msg.to_string())
    }
}

/// Checks that `value` has no non-finite float and is nested at most [`MAX_PAYLOAD_DEPTH`]
/// levels deep.
pub(crate) fn check<T: Serialize + ?Sized>(value: &T) -> Result<(), Problem> {
    value.serialize(&mut Walker {
        depth: 0,
        at: "the top level".to_owned(),
    })
}

struct Walker {
    depth: usize,
    /// Where the walk is: the field or element being serialized.
    at: String,
}

impl Walker {
    fn float(&self, v: f64) -> Result<(), Problem> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(Problem::NonFinite {
                value: v,
                at: self.at.clone(),
            })
        }
    }

    fn enter(&mut self) -> Result<&mut Self, Problem> {
        self.depth += 1;
        if self.depth > MAX_PAYLOAD_DEPTH {
            return Err(Problem::TooDeep);
        }
        Ok(self)
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &str, v: &T) -> Result<(), Problem> {
        let outer = std::mem::replace(&mut self.at, format!("field `{name}`"));
        v.serialize(&mut *self)?;
        self.at = outer;
        Ok(())
    }

    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Problem> {
        v.serialize(&mut *self)
    }
}

macro_rules! fine {
    ($($name:ident($t:ty)),* $(,)?) => {$(
        fn $name(self, _v: $t) -> Result<(), Problem> { Ok(()) }
    )*};
}

impl<'a> ser::Serializer for &'a mut Walker {
    type Ok = ();
    type Error = Problem;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fine!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_f32(self, v: f32) -> Result<(), Problem> {
        self.float(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Problem> {
        self.float(v)
    }
    fn serialize_none(self) -> Result<(), Problem> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Problem> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Problem> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), Problem> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Problem> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), Problem> {
        // `{"Variant": value}`: one object level.
        let w = self.enter()?;
        w.field(variant, v)?;
        w.depth -= 1;
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Problem> {
        Compound::open(self, 1)
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, Problem> {
        Compound::open(self, 1)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Problem> {
        Compound::open(self, 1)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Problem> {
        // `{"Variant": [...]}`: two levels.
        Compound::open(self, 2)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Problem> {
        Compound::open(self, 1)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Problem> {
        Compound::open(self, 1)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Problem> {
        Compound::open(self, 2)
    }
}

/// An array or object being walked; leaving it restores the depth.
struct Compound<'a> {
    walker: &'a mut Walker,
    levels: usize,
}

impl<'a> Compound<'a> {
    fn open(walker: &'a mut Walker, levels: usize) -> Result<Self, Problem> {
        for _ in 0..levels {
            walker.enter()?;
        }
        Ok(Compound { walker, levels })
    }

    fn close(self) -> Result<(), Problem> {
        self.walker.depth -= self.levels;
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Problem;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Problem> {
        self.walker.element(v)
    }
    fn end(self) -> Result<(), Problem> {
        self.close()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Problem;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Problem> {
        self.walker.element(v)
    }
    fn end(self) -> Result<(), Problem> {
        self.close()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Problem;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Problem> {
        self.walker.element(v)
    }
    fn end(self) -> Result<(), Problem> {
        self.close()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Problem;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Problem> {
        self.walker.element(v)
    }
    fn end(self) -> Result<(), Problem> {
        self.close()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Problem;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Problem> {
        self.walker.element(k)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Problem> {
        self.walker.element(v)
    }
    fn end(self) -> Result<(), Problem> {
        self.close()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Problem;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> Result<(), Problem> {
        self.walker.field(name, v)
    }
    fn end(self) -> Result<(), Problem> {
        self.close()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Problem;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> Result<(), Problem> {
        self.walker.field(name, v)
    }
    fn end(self) -> Result<(), Problem> {
        self.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Pay {
        amount: f64,
        maybe: Option<f32>,
        list: Vec<f64>,
    }

    #[test]
    fn non_finite_floats_are_found_with_their_field() {
        let ok = Pay {
            amount: f64::MAX,
            maybe: Some(-0.0),
            list: vec![f64::MIN_POSITIVE],
        };
        assert_eq!(check(&ok), Ok(()));
        let nan = Pay {
            amount: f64::NAN,
            maybe: None,
            list: vec![],
        };
        assert!(
            matches!(check(&nan), Err(Problem::NonFinite { at, .. }) if at == "field `amount`")
        );
        let inf = Pay {
            amount: 1.0,
            maybe: Some(f32::INFINITY),
            list: vec![],
        };
        assert!(matches!(check(&inf), Err(Problem::NonFinite { at, .. }) if at == "field `maybe`"));
        let in_list = Pay {
            amount: 1.0,
            maybe: None,
            list: vec![1.0, f64::NEG_INFINITY],
        };
        assert!(
            matches!(check(&in_list), Err(Problem::NonFinite { at, .. }) if at == "field `list`")
        );
        assert!(check(&serde_json::json!({"a": [1, 2.5, {"b": null}]})).is_ok());
    }

    fn nested(levels: usize) -> serde_json::Value {
        let mut v = serde_json::json!(1);
        for _ in 0..levels {
            v = serde_json::json!([v]);
        }
        v
    }

    #[test]
    fn depth_is_limited_to_what_serde_json_reads_back() {
        // The deepest value the check lets through is read back by serde_json…
        let deepest = nested(MAX_PAYLOAD_DEPTH);
        assert_eq!(check(&deepest), Ok(()));
        let text = serde_json::to_string(&deepest).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).expect("reads back");
        // …one more level is refused, as serde_json would refuse to read it.
        let too_deep = nested(MAX_PAYLOAD_DEPTH + 1);
        assert_eq!(check(&too_deep), Err(Problem::TooDeep));
        let text = serde_json::to_string(&too_deep).unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
    }
}
