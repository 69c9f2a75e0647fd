//! Who a verified token says a subscriber is, and the clock tokens expire by.

/// PocketBase's fixed id of its `_superusers` collection (the same in every
/// installation), so a token naming it is a superuser's even without a name.
pub const SUPERUSERS_COLLECTION_ID: &str = "pbc_3142635823";
/// PocketBase's name of the superusers collection.
pub const SUPERUSERS_COLLECTION_NAME: &str = "_superusers";

/// A subscriber's verified identity.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// The auth record's id.
    pub id: String,
    /// The id of the record's auth collection.
    pub collection_id: String,
    /// The collection's name; `""` when the token did not say.
    pub collection_name: String,
    /// Superusers may subscribe to every topic.
    pub superuser: bool,
    /// The auth record as the token's verifier knows it (PocketBase's answer,
    /// or the JWT's claims): what `@request.auth.*` reads in rules and
    /// filters. `None`: only the fields above are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<std::sync::Arc<serde_json::Value>>,
}

/// The same identity: the record's fields as a verifier saw them at some
/// moment do not make two identities differ.
impl PartialEq for Auth {
    fn eq(&self, other: &Auth) -> bool {
        self.id == other.id
            && self.collection_id == other.collection_id
            && self.collection_name == other.collection_name
            && self.superuser == other.superuser
    }
}

impl Auth {
    /// The auth record filters read: the verifier's, or one made of the
    /// fields above.
    pub fn record_json(&self) -> serde_json::Value {
        match &self.record {
            Some(record) => (**record).clone(),
            None => serde_json::json!({
                "id": self.id,
                "collectionId": self.collection_id,
                "collectionName": self.collection_name,
            }),
        }
    }
}

/// Whether an identity is a superuser's by PocketBase's fixed collection.
pub fn is_superusers_collection(collection_id: &str, collection_name: &str) -> bool {
    collection_id == SUPERUSERS_COLLECTION_ID || collection_name == SUPERUSERS_COLLECTION_NAME
}

/// Seconds since the Unix epoch, the unit of a JWT's `exp`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
