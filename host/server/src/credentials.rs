//! Named connector credentials, defined by the server's admin and granted
//! to tenants.
//!
//! Secrets (SASL passwords, TLS keys and certificates, which librdkafka reads
//! from files) never come from a tenant's job file: the admin defines them
//! in a file given to `weir serve --credentials FILE`, one table per
//! credential, whose keys are librdkafka settings:
//!
//! ```toml
//! [acme-kafka]
//! "security.protocol" = "SASL_SSL"
//! "sasl.mechanism" = "SCRAM-SHA-512"
//! "sasl.username" = "acme"
//! "sasl.password" = "…"
//! "ssl.ca.location" = "/etc/weir/kafka-ca.pem"
//! ```
//!
//! and grants a credential to a tenant (`weir tenant grant T --credential
//! acme-kafka`), whose Kafka nodes name it (`credential = "acme-kafka"`).
//! Its settings are the admin's and are not checked against the tenants'
//! allow-list; they override the node's own.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::error::ServerError;

/// A credential's librdkafka settings.
pub type Settings = BTreeMap<String, String>;

/// The credentials of a server's configuration, by name.
#[derive(Clone, Default)]
pub struct Credentials {
    by_name: BTreeMap<String, Settings>,
}

impl fmt::Debug for Credentials {
    /// Names only: the values are secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

impl Credentials {
    /// Reads a credentials file.
    ///
    /// # Errors
    /// [`ServerError::InvalidArgument`] naming the file, and the line of a
    /// value that is not a string or a name that is not valid.
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ServerError::InvalidArgument(format!(
                "cannot read credentials file `{}`: {e}",
                path.display()
            ))
        })?;
        Self::parse(path, &text)
    }

    /// Parses a credentials file's text.
    ///
    /// # Errors
    /// As [`Credentials::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, ServerError> {
        let bad = |message: String| {
            ServerError::InvalidArgument(format!("{}: {message}", path.display()))
        };
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map_or(1, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            });
            bad(format!("line {line}: {}", e.message().trim()))
        })?;
        let mut by_name = BTreeMap::new();
        for (name, value) in table {
            crate::tenants::check_name("credential", &name).map_err(|e| bad(e.to_string()))?;
            let toml::Value::Table(settings) = value else {
                return Err(bad(format!(
                    "`{name}` must be a table of librdkafka settings"
                )));
            };
            let mut out = Settings::new();
            for (k, v) in settings {
                let v = match v {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => {
                        return Err(bad(format!(
                            "`{name}.{k}` must be a string, integer or boolean"
                        )));
                    }
                };
                out.insert(k, v);
            }
            by_name.insert(name, out);
        }
        Ok(Self { by_name })
    }

    /// The settings of credential `name`.
    pub fn get(&self, name: &str) -> Option<&Settings> {
        self.by_name.get(name)
    }

    /// The names defined.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tables_of_settings_and_hides_values_in_debug() {
        let c = Credentials::parse(
            Path::new("creds.toml"),
            "[acme-kafka]\n\"sasl.username\" = \"acme\"\n\"sasl.password\" = \"hunter2\"\n\"socket.timeout.ms\" = 5000\n",
        )
        .unwrap();
        let s = c.get("acme-kafka").unwrap();
        assert_eq!(s["sasl.password"], "hunter2");
        assert_eq!(s["socket.timeout.ms"], "5000");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.names().collect::<Vec<_>>(), ["acme-kafka"]);
    }

    #[test]
    fn errors_name_the_file_line_and_credential() {
        let e = Credentials::parse(Path::new("c.toml"), "[a]\nx = \n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml: line 2"), "{e}");
        let e = Credentials::parse(Path::new("c.toml"), "a = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`a` must be a table"), "{e}");
        let e = Credentials::parse(Path::new("c.toml"), "[Bad_Name]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid credential name"), "{e}");
        let e = Credentials::parse(Path::new("c.toml"), "[a]\nx = [1]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`a.x`"), "{e}");
    }
}
