//! Primitives of the Parquet columns: what a row is built from ([`Row`]), what a column is
//! ([`Column`]) and the builders the sections' columns and `to_parquet::columns` share.
//! Conventions (every column nullable, null meaning "section absent") are in
//! `to_parquet::columns`, which places the columns in the file.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanArray, PrimitiveArray, StringArray, StringDictionaryBuilder,
    StructArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{ArrowPrimitiveType, DataType, Field, Fields, Int32Type};

use crate::model::dissect::Dissection;
use crate::model::event::Event;

/// What a row is built from: one decoded event and the context its section gives it.
pub struct Row {
    pub event: Event,
    /// Wall-clock ns since the Unix epoch (`common.timestamp` + the section's clock offset);
    /// `None` without a `common` section or when the sum leaves the i64 range.
    pub time: Option<i64>,
    /// `common.host` when set, else the section header's host; `None` when empty.
    pub host: Option<Arc<str>>,
    pub kernel: Option<Arc<str>>,
    /// The probe kind as written in the stream (kept even when this build does not know it).
    pub probe_kind: Option<std::borrow::Cow<'static, str>>,
    pub dissection: Option<Dissection>,
    /// Unknown sections as one JSON object, `None` when there are none.
    pub extra: Option<String>,
}

/// Builds one column for a slice of rows.
pub type Build = fn(&[Row]) -> ArrayRef;

/// One column of the schema.
#[derive(Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub data_type: fn() -> DataType,
    pub build: Build,
    /// Whether Parquet dictionary encoding is worth trying (off for values that rarely repeat:
    /// the writer would build a dictionary only to fall back to plain encoding).
    pub dictionary: bool,
}

impl Column {
    pub fn field(&self) -> Field {
        Field::new(self.name, (self.data_type)(), true)
    }
}

/// `col!(name, data type, dictionary, build)`: a [`Column`] in a const table.
macro_rules! col {
    ($name:literal, $ty:expr, $dict:expr, $build:expr) => {
        $crate::model::sections::parquet::Column {
            name: $name,
            data_type: || $ty,
            build: $build,
            dictionary: $dict,
        }
    };
}
pub(crate) use col;

pub fn prim<T: ArrowPrimitiveType>(
    rows: &[Row],
    f: impl Fn(&Row) -> Option<T::Native>,
) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<PrimitiveArray<T>>())
}

pub fn string<'a>(rows: &'a [Row], f: impl Fn(&'a Row) -> Option<&'a str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

pub fn dict<'a>(rows: &'a [Row], f: impl Fn(&'a Row) -> Option<&'a str>) -> ArrayRef {
    let mut builder = StringDictionaryBuilder::<Int32Type>::new();
    for row in rows {
        builder.append_option(f(row));
    }
    Arc::new(builder.finish())
}

pub fn boolean(rows: &[Row], f: impl Fn(&Row) -> Option<bool>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<BooleanArray>())
}

pub fn binary<'a>(rows: &'a [Row], f: impl Fn(&'a Row) -> Option<&'a [u8]>) -> ArrayRef {
    let mut builder = BinaryBuilder::new();
    for row in rows {
        builder.append_option(f(row));
    }
    Arc::new(builder.finish())
}

pub fn dict_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

pub fn nullable(name: &str, data_type: DataType) -> Arc<Field> {
    Arc::new(Field::new(name, data_type, true))
}

/// A struct column from child arrays, null where `present` is false.
pub fn struct_array(fields: Fields, children: Vec<ArrayRef>, present: Vec<bool>) -> ArrayRef {
    let nulls = NullBuffer::from(present);
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    // The children are built from the same rows as `present`: lengths and types agree by
    // construction, so this cannot fail.
    Arc::new(
        StructArray::try_new(fields, children, nulls)
            .expect("struct children built from the same rows"),
    )
}
