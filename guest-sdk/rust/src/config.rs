//! The operator's configuration.

use std::str::FromStr;

use crate::Error;

/// The `config` table of the operator in the job file, flattened to string
/// pairs (nested tables as dotted names, arrays as JSON text).
#[derive(Clone, Debug, Default)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

impl Config {
    /// A configuration from pairs, as the host sends them.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self { pairs }
    }

    /// The raw text of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key` parsed as `T`, or `default` when absent.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the key when the value does not parse.
    pub fn get_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, Error>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse(key, v),
        }
    }

    /// `key` parsed as `T`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the key is missing or does not parse.
    pub fn require<T: FromStr>(&self, key: &str) -> Result<T, Error>
    where
        T::Err: std::fmt::Display,
    {
        let v = self
            .get(key)
            .ok_or_else(|| Error::InvalidConfig(format!("missing required key `{key}`")))?;
        parse(key, v)
    }

    /// All pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn parse<T: FromStr>(key: &str, v: &str) -> Result<T, Error>
where
    T::Err: std::fmt::Display,
{
    v.parse().map_err(|e| {
        Error::InvalidConfig(format!(
            "`{key}` = {v:?} is not a valid {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_require_and_errors_name_the_key() {
        let c = Config::new(vec![("n".into(), "3".into()), ("s".into(), "x".into())]);
        assert_eq!(c.get_or("n", 0u32).unwrap(), 3);
        assert_eq!(c.get_or("absent", 7u32).unwrap(), 7);
        let e = c.get_or::<u32>("s", 0).unwrap_err().to_string();
        assert!(e.contains("`s`"), "{e}");
        let e = c.require::<u32>("absent").unwrap_err().to_string();
        assert!(e.contains("missing required key `absent`"), "{e}");
    }
}
