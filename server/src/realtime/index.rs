//! The subscription index: which subscriptions a changed document may concern, found without
//! looking at the others. Document subscriptions are keyed by path; query subscriptions by
//! collection path (or collection-group ID) and, when the query pins a field with `==` to a
//! string, boolean or reference, by that field and value too — so a write reaches the
//! subscriptions that can match it, and fan-out cost grows with them, not with all subscribers.

use std::collections::{HashMap, HashSet};

use super::feed::FeedId;
use crate::docs::query::{field_value, Filter, Op, Query, Source};
use crate::model::keys::encode_value;
use crate::model::{DocPath, Document, FieldPath, Value};

/// A connection.
pub type ConnId = u64;

/// What a change is routed to: one connection's document subscription, or a shared query feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Watcher {
    Subscription(ConnId, u32),
    Feed(FeedId),
}

#[derive(Default)]
struct Bucket {
    /// Queries without an indexable equality: every change in the collection concerns them.
    all: HashSet<Watcher>,
    /// field → encoded value → subscriptions with `field == value`.
    equal: HashMap<FieldPath, HashMap<Vec<u8>, HashSet<Watcher>>>,
}

impl Bucket {
    fn is_empty(&self) -> bool {
        self.all.is_empty() && self.equal.is_empty()
    }

    fn collect(&self, documents: &[Option<&Document>], out: &mut Vec<Watcher>) {
        out.extend(self.all.iter().copied());
        for (field, by_value) in &self.equal {
            let mut seen: Option<Vec<u8>> = None;
            for document in documents.iter().flatten() {
                if let Some(value) = field_value(document, field).filter(indexable) {
                    let mut key = Vec::new();
                    encode_value(&mut key, &value);
                    if seen.as_ref() == Some(&key) {
                        continue;
                    }
                    if let Some(subs) = by_value.get(&key) {
                        out.extend(subs.iter().copied());
                    }
                    seen = Some(key);
                }
            }
        }
    }
}

/// Values whose equality is byte equality of their encoding (numbers are not: `1 == 1.0`).
fn indexable(value: &Value) -> bool {
    matches!(
        value,
        Value::String(_) | Value::Bool(_) | Value::Reference(_)
    )
}

/// Where a subscription was filed, so removing it is as cheap as adding it.
#[derive(Debug, Clone)]
pub enum Placement {
    Doc(DocPath),
    Collection(String, Option<(FieldPath, Vec<u8>)>),
    Group(String, Option<(FieldPath, Vec<u8>)>),
}

impl Placement {
    pub fn of_doc(path: &DocPath) -> Placement {
        Placement::Doc(path.clone())
    }

    pub fn of_query(query: &Query) -> Placement {
        let equality = query
            .conjuncts()
            .into_iter()
            .find_map(|filter| match filter {
                Filter::Field {
                    field,
                    op: Op::Eq,
                    value,
                } if !field.is_document_id() && indexable(value) => {
                    let mut key = Vec::new();
                    encode_value(&mut key, value);
                    Some((field.clone(), key))
                }
                _ => None,
            });
        match &query.source {
            Source::Collection(collection) => {
                Placement::Collection(collection.as_str().to_string(), equality)
            }
            Source::Group { collection_id, .. } => {
                Placement::Group(collection_id.clone(), equality)
            }
        }
    }
}

#[derive(Default)]
pub struct SubscriptionIndex {
    docs: HashMap<DocPath, HashSet<Watcher>>,
    collections: HashMap<String, Bucket>,
    groups: HashMap<String, Bucket>,
}

impl SubscriptionIndex {
    /// Nothing is filed (empty entries are removed as they empty).
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty() && self.collections.is_empty() && self.groups.is_empty()
    }

    pub fn insert(&mut self, placement: &Placement, key: Watcher) {
        match placement {
            Placement::Doc(path) => {
                self.docs.entry(path.clone()).or_default().insert(key);
            }
            Placement::Collection(name, equality) => file(
                self.collections.entry(name.clone()).or_default(),
                equality,
                key,
            ),
            Placement::Group(name, equality) => {
                file(self.groups.entry(name.clone()).or_default(), equality, key)
            }
        }
    }

    pub fn remove(&mut self, placement: &Placement, key: Watcher) {
        match placement {
            Placement::Doc(path) => {
                if let Some(subs) = self.docs.get_mut(path) {
                    subs.remove(&key);
                    if subs.is_empty() {
                        self.docs.remove(path);
                    }
                }
            }
            Placement::Collection(name, equality) => {
                unfile(&mut self.collections, name, equality, key)
            }
            Placement::Group(name, equality) => unfile(&mut self.groups, name, equality, key),
        }
    }

    /// Every subscription the change of one document may concern (with repeats).
    pub fn lookup(
        &self,
        path: &DocPath,
        before: Option<&Document>,
        after: Option<&Document>,
        out: &mut Vec<Watcher>,
    ) {
        if let Some(subs) = self.docs.get(path) {
            out.extend(subs.iter().copied());
        }
        let documents = [before, after];
        if let Some(bucket) = self.collections.get(path.collection().as_str()) {
            bucket.collect(&documents, out);
        }
        if let Some(bucket) = self.groups.get(path.collection().id()) {
            bucket.collect(&documents, out);
        }
    }
}

fn file(bucket: &mut Bucket, equality: &Option<(FieldPath, Vec<u8>)>, key: Watcher) {
    match equality {
        None => {
            bucket.all.insert(key);
        }
        Some((field, value)) => {
            bucket
                .equal
                .entry(field.clone())
                .or_default()
                .entry(value.clone())
                .or_default()
                .insert(key);
        }
    }
}

fn unfile(
    buckets: &mut HashMap<String, Bucket>,
    name: &str,
    equality: &Option<(FieldPath, Vec<u8>)>,
    key: Watcher,
) {
    let Some(bucket) = buckets.get_mut(name) else {
        return;
    };
    match equality {
        None => {
            bucket.all.remove(&key);
        }
        Some((field, value)) => {
            if let Some(by_value) = bucket.equal.get_mut(field) {
                if let Some(subs) = by_value.get_mut(value) {
                    subs.remove(&key);
                    if subs.is_empty() {
                        by_value.remove(value);
                    }
                }
                if by_value.is_empty() {
                    bucket.equal.remove(field);
                }
            }
        }
    }
    if bucket.is_empty() {
        buckets.remove(name);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(path: &str, data: serde_json::Value) -> Document {
        let Value::Map(data) = Value::from_json(&data).unwrap() else {
            unreachable!()
        };
        Document {
            path: DocPath::parse(path).unwrap(),
            data,
            create_time: crate::model::Timestamp::now(),
            update_time: crate::model::Timestamp::now(),
            version: 1,
        }
    }

    #[test]
    fn a_change_reaches_only_the_subscriptions_that_can_match_it() {
        let mut index = SubscriptionIndex::default();
        let q = |body| Query::from_json(&body, 100).unwrap();
        let owner_u1 =
            Placement::of_query(&q(json!({"from": "posts", "where": ["owner", "==", "u1"]})));
        let owner_u2 =
            Placement::of_query(&q(json!({"from": "posts", "where": ["owner", "==", "u2"]})));
        let all_posts = Placement::of_query(&q(json!({"from": "posts"})));
        let group = Placement::of_query(&q(json!({"from": "posts", "allDescendants": true})));
        let other = Placement::of_query(&q(json!({"from": "users"})));
        let one = Placement::of_doc(&DocPath::parse("posts/p1").unwrap());
        for (i, p) in [&owner_u1, &owner_u2, &all_posts, &group, &other, &one]
            .iter()
            .enumerate()
        {
            index.insert(p, Watcher::Subscription(1, i as u32));
        }
        let mut out = Vec::new();
        let before = doc("posts/p1", json!({"owner": "u1"}));
        let after = doc("posts/p1", json!({"owner": "u3"}));
        index.lookup(&after.path, Some(&before), Some(&after), &mut out);
        out.sort();
        let sub = |i| Watcher::Subscription(1, i);
        assert_eq!(out, vec![sub(0), sub(2), sub(3), sub(5)]);
        index.remove(&owner_u1, sub(0));
        out.clear();
        index.lookup(&after.path, Some(&before), Some(&after), &mut out);
        out.sort();
        assert_eq!(out, vec![sub(2), sub(3), sub(5)]);
        for (i, p) in [&owner_u2, &all_posts, &group, &other, &one]
            .iter()
            .enumerate()
        {
            assert!(!index.is_empty());
            index.remove(p, Watcher::Subscription(1, i as u32 + 1));
        }
        assert!(
            index.is_empty(),
            "removing the last one leaves nothing behind"
        );
    }
}
