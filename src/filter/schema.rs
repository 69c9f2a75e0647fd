//! What the edge may know of a collection: its fields' types.

use serde_json::Value;

/// A field's type as far as filters care (PocketBase's field types, grouped by SQL column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A `TEXT` column: text, editor, email, url, date, autodate, password.
    Text,
    /// `NUMERIC`.
    Number,
    /// `BOOLEAN` (numeric affinity, 0/1).
    Bool,
    /// A JSON field or geoPoint: read through `json_extract`, compared with `IS`.
    Json,
    Select {
        multiple: bool,
    },
    Relation {
        multiple: bool,
    },
    File {
        multiple: bool,
    },
}

impl FieldKind {
    /// PocketBase's `MultiValuer` fields, the ones `:each` and `:length` apply to.
    pub fn is_multi_valuer(self) -> bool {
        matches!(
            self,
            FieldKind::Select { .. } | FieldKind::Relation { .. } | FieldKind::File { .. }
        )
    }
}

/// The filterable fields of a collection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    fields: std::collections::HashMap<String, FieldKind>,
}

impl Schema {
    pub fn new() -> Schema {
        Schema::default()
    }

    /// Adds (or replaces) a field.
    pub fn field(mut self, name: &str, kind: FieldKind) -> Schema {
        self.fields.insert(name.to_owned(), kind);
        self
    }

    pub fn kind(&self, name: &str) -> Option<FieldKind> {
        self.fields.get(name).copied()
    }

    /// From a collection as PocketBase's `/api/collections/<name>` returns it; hidden fields
    /// are left out (realtime filters cannot use them), unknown field types too.
    pub fn from_pocketbase(collection: &Value) -> Schema {
        let mut schema = Schema::new();
        let Some(fields) = collection.get("fields").and_then(Value::as_array) else {
            return schema;
        };
        for f in fields {
            let (Some(name), Some(kind)) = (
                f.get("name").and_then(Value::as_str),
                f.get("type").and_then(Value::as_str),
            ) else {
                continue;
            };
            if f.get("hidden").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let multiple = f.get("maxSelect").and_then(Value::as_u64).unwrap_or(1) > 1;
            let kind = match kind {
                "text" | "editor" | "email" | "url" | "date" | "autodate" | "password" => {
                    FieldKind::Text
                }
                "number" => FieldKind::Number,
                "bool" => FieldKind::Bool,
                "json" | "geoPoint" => FieldKind::Json,
                "select" => FieldKind::Select { multiple },
                "relation" => FieldKind::Relation { multiple },
                "file" => FieldKind::File { multiple },
                _ => continue,
            };
            schema = schema.field(name, kind);
        }
        schema
    }
}
