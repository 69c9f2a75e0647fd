//! placeholder
#[derive(Debug)]
pub struct Fields;
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct FieldsError;
