//! Roles for the rules' `hasRole(role[, domain])`: grants (uid → role in a domain) and
//! inheritance (a role includes another in a domain), answered by casbin's RBAC-with-domains role
//! manager. Stored in the database as project data; the in-memory graph is rebuilt and swapped
//! atomically on every change.

use std::sync::{Arc, RwLock};

use casbin::{DefaultRoleManager, RoleManager};
use serde::{Deserialize, Serialize};

use crate::store::{
    commit, CommitError, Expect, ReadView, SharedStore, Space, StoreError, WriteSet,
};

/// The domain of grants and `hasRole(role)` calls that name none.
pub const DEFAULT_DOMAIN: &str = "default";
/// Inheritance chains longer than this are not followed (casbin's hierarchy limit).
const MAX_HIERARCHY: usize = 10;
/// Longest uid, role or domain name, in bytes.
const MAX_NAME_BYTES: usize = 256;
pub(crate) const ROLES_KEY: &[u8] = b"roles.policies";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub uid: String,
    pub role: String,
    pub domain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inheritance {
    pub role: String,
    pub inherits: String,
    pub domain: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Policies {
    pub(crate) grants: Vec<Grant>,
    pub(crate) inherits: Vec<Inheritance>,
}

#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("role policies are corrupt: {0}")]
    Corrupt(String),
    #[error("the role policies kept changing; retry")]
    Contention,
}

/// A built role graph with the policies it came from.
struct Snapshot {
    policies: Policies,
    manager: DefaultRoleManager,
}

impl Snapshot {
    fn build(policies: Policies) -> Snapshot {
        let mut manager = DefaultRoleManager::new(MAX_HIERARCHY);
        // Uids and roles share casbin's name space; prefixes keep a uid equal to a role name
        // from becoming that role.
        for grant in &policies.grants {
            manager.add_link(
                &user_node(&grant.uid),
                &role_node(&grant.role),
                Some(&grant.domain),
            );
        }
        for edge in &policies.inherits {
            manager.add_link(
                &role_node(&edge.role),
                &role_node(&edge.inherits),
                Some(&edge.domain),
            );
        }
        Snapshot { policies, manager }
    }
}

fn user_node(uid: &str) -> String {
    format!("user:{uid}")
}

fn role_node(role: &str) -> String {
    format!("role:{role}")
}

pub struct Roles {
    store: SharedStore,
    current: RwLock<Arc<Snapshot>>,
}

fn validate(kind: &str, value: &str) -> Result<(), RolesError> {
    if value.is_empty() || value.len() > MAX_NAME_BYTES {
        return Err(RolesError::Invalid(format!(
            "{kind} must be 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

impl Roles {
    pub async fn open(store: SharedStore) -> Result<Arc<Roles>, RolesError> {
        let reader = store.clone();
        let (policies, _) = tokio::task::spawn_blocking(move || load(&reader))
            .await
            .map_err(|err| RolesError::Corrupt(err.to_string()))??;
        Ok(Arc::new(Roles {
            store,
            current: RwLock::new(Arc::new(Snapshot::build(policies))),
        }))
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.read().ok().map(|s| s.clone())
    }

    /// Does `uid` hold `role` in `domain` (default domain when `None`), directly or inherited?
    pub fn has_role(&self, uid: &str, role: &str, domain: Option<&str>) -> bool {
        self.snapshot().is_some_and(|s| {
            s.manager.has_link(
                &user_node(uid),
                &role_node(role),
                Some(domain.unwrap_or(DEFAULT_DOMAIN)),
            )
        })
    }

    /// Direct grants, of one user or of everyone.
    pub fn grants(&self, uid: Option<&str>) -> Vec<Grant> {
        self.snapshot()
            .map(|s| {
                s.policies
                    .grants
                    .iter()
                    .filter(|g| uid.is_none_or(|u| g.uid == u))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn inheritances(&self) -> Vec<Inheritance> {
        self.snapshot()
            .map(|s| s.policies.inherits.clone())
            .unwrap_or_default()
    }

    /// Re-reads the stored policies (after a migration changed them) and swaps the graph.
    pub async fn reload(&self) -> Result<(), RolesError> {
        let reader = self.store.clone();
        let (policies, _) = tokio::task::spawn_blocking(move || load(&reader))
            .await
            .map_err(|err| RolesError::Corrupt(err.to_string()))??;
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(Snapshot::build(policies));
        }
        Ok(())
    }

    /// Grants `role` to `uid`; false when it was already granted.
    pub async fn grant(&self, grant: Grant) -> Result<bool, RolesError> {
        validate_grant(&grant)?;
        self.change(move |p| {
            if p.grants.contains(&grant) {
                return Ok(false);
            }
            p.grants.push(grant.clone());
            Ok(true)
        })
        .await
    }

    /// Revokes a grant; false when there was none.
    pub async fn revoke(&self, grant: Grant) -> Result<bool, RolesError> {
        self.change(move |p| {
            let before = p.grants.len();
            p.grants.retain(|g| *g != grant);
            Ok(p.grants.len() != before)
        })
        .await
    }

    /// Makes `role` include `inherits` in `domain`; refuses cycles.
    pub async fn inherit(&self, edge: Inheritance) -> Result<bool, RolesError> {
        validate("role", &edge.role)?;
        validate("inherits", &edge.inherits)?;
        validate("domain", &edge.domain)?;
        if edge.role == edge.inherits {
            return Err(RolesError::Invalid("a role cannot inherit itself".into()));
        }
        self.change(move |p| {
            if p.inherits.contains(&edge) {
                return Ok(false);
            }
            let graph = Snapshot::build(p.clone());
            if graph.manager.has_link(
                &role_node(&edge.inherits),
                &role_node(&edge.role),
                Some(&edge.domain),
            ) {
                return Err(RolesError::Invalid(format!(
                    "'{}' already includes '{}': the inheritance would make a cycle",
                    edge.inherits, edge.role
                )));
            }
            p.inherits.push(edge.clone());
            Ok(true)
        })
        .await
    }

    /// Applies `change` to the stored policies in one optimistic commit, then swaps the graph.
    async fn change(
        &self,
        change: impl Fn(&mut Policies) -> Result<bool, RolesError> + Send + Sync + 'static,
    ) -> Result<bool, RolesError> {
        let change = Arc::new(change);
        for _ in 0..16 {
            let reader = self.store.clone();
            let (mut policies, version) = tokio::task::spawn_blocking(move || load(&reader))
                .await
                .map_err(|err| RolesError::Corrupt(err.to_string()))??;
            let changed = change(&mut policies)?;
            if !changed {
                return Ok(false);
            }
            let value = encode_policies(&policies)?;
            let mut write_set = WriteSet::default();
            write_set.check(
                Space::Meta,
                ROLES_KEY.to_vec(),
                version.map_or(Expect::Absent, Expect::Version),
            );
            write_set.put_versioned(Space::Meta, ROLES_KEY.to_vec(), value);
            match commit(self.store.as_ref(), write_set).await {
                Ok(_) => {
                    if let Ok(mut current) = self.current.write() {
                        *current = Arc::new(Snapshot::build(policies));
                    }
                    return Ok(true);
                }
                Err(CommitError::Conflict) => continue,
                Err(CommitError::Store(err)) => return Err(err.into()),
            }
        }
        Err(RolesError::Contention)
    }
}

/// Checks the names of a grant (uid, role, domain: 1 to 256 bytes each).
pub fn validate_grant(grant: &Grant) -> Result<(), RolesError> {
    validate("uid", &grant.uid)?;
    validate("role", &grant.role)?;
    validate("domain", &grant.domain)
}

/// The stored form of the policies: 8 bytes for the version stamp, then JSON.
pub(crate) fn encode_policies(policies: &Policies) -> Result<Vec<u8>, RolesError> {
    let mut value = vec![0u8; 8];
    value.extend_from_slice(
        &serde_json::to_vec(policies).map_err(|e| RolesError::Corrupt(e.to_string()))?,
    );
    Ok(value)
}

fn load(store: &SharedStore) -> Result<(Policies, Option<u64>), RolesError> {
    read_policies(store.read()?.as_ref())
}

/// The stored policies and the version of their value (`None` when never stored).
pub(crate) fn read_policies(view: &dyn ReadView) -> Result<(Policies, Option<u64>), RolesError> {
    let Some(bytes) = view
        .get_many(Space::Meta, &[ROLES_KEY.to_vec()])?
        .pop()
        .flatten()
    else {
        return Ok((Policies::default(), None));
    };
    let version = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes);
    let policies = serde_json::from_slice(bytes.get(8..).unwrap_or_default())
        .map_err(|e| RolesError::Corrupt(e.to_string()))?;
    Ok((policies, version))
}
