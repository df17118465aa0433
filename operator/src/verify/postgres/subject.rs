//! The Tenants and Customers whose roles are inspected, as the caller found them in the cluster.

use bulkhead_crds::v1alpha1::DatabaseIsolation;

use crate::postgres::naming::{self, Names};

/// A Tenant or Customer with its database enabled, as the caller found it in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The Tenant's name (the Customer's Tenant for a Customer).
    pub tenant: String,
    /// The Customer's name; none for a Tenant.
    pub customer: Option<String>,
    /// Where its data lives: a schema of the shared database or a database of its own.
    pub isolation: DatabaseIsolation,
}

impl Subject {
    /// The names of its schema or database and roles.
    pub fn names(&self) -> Names {
        naming::names(&self.tenant, self.customer.as_deref())
    }

    /// How the report names it: `Tenant acme` or `Customer acme/dental`.
    pub fn label(&self) -> String {
        match &self.customer {
            Some(customer) => format!("Customer {}/{customer}", self.tenant),
            None => format!("Tenant {}", self.tenant),
        }
    }
}
