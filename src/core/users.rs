//! This core's authenticated clients by user id, for messages to one user
//! (`{"userId": …}` publishes, `Broker::send_to_user`).

use smallvec::SmallVec;

#[derive(Debug, Default)]
pub struct Users {
    keys: ahash::HashMap<Box<str>, SmallVec<[u32; 2]>>,
}

impl Users {
    /// Client `key` is now authenticated as `user`.
    pub fn add(&mut self, user: &str, key: u32) {
        self.keys.entry(user.into()).or_default().push(key);
    }

    /// Client `key` (authenticated as `user`) is gone.
    pub fn remove(&mut self, user: &str, key: u32) {
        if let Some(keys) = self.keys.get_mut(user) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.keys.remove(user);
            }
        }
    }

    /// The clients authenticated as `user`.
    pub fn clients(&self, user: &str) -> &[u32] {
        self.keys.get(user).map_or(&[], |keys| &keys[..])
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
