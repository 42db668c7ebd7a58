//! Keyed state, held by the host, for keyed process functions.
//!
//! A state handle is just a name and a type: create handles in `init` and
//! keep them in your operator. Every call reads or writes the state of the
//! *current key* (the key of the `process` or `on_timer` call in progress).
//! Nothing is kept in the guest: the host stores the bytes in its state
//! backend and checkpoints them with the job.
//!
//! Reducing and aggregating state fold on the guest side (the function is
//! yours) and store the result in the host, in one read and one write.

use std::marker::PhantomData;

use crate::__private::keyed::weir::udf::keyed_state as host;
use crate::{Codec, Error};

/// One value per key.
#[derive(Debug, Clone)]
pub struct ValueState<T> {
    name: String,
    _t: PhantomData<fn() -> T>,
}

impl<T: Codec> ValueState<T> {
    /// Value state called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            _t: PhantomData,
        }
    }

    /// The current key's value, if set.
    ///
    /// # Errors
    /// Bytes that do not decode as `T`.
    pub fn get(&self) -> Result<Option<T>, Error> {
        host::value_get(&self.name)
            .map(|b| T::from_bytes(&b))
            .transpose()
    }

    /// Sets the current key's value.
    pub fn set(&self, value: &T) {
        host::value_set(&self.name, &value.to_bytes());
    }

    /// Clears the current key's value.
    pub fn clear(&self) {
        host::clear(&self.name);
    }
}

/// A list per key; adding does not read the list back.
#[derive(Debug, Clone)]
pub struct ListState<T> {
    name: String,
    _t: PhantomData<fn() -> T>,
}

impl<T: Codec> ListState<T> {
    /// List state called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            _t: PhantomData,
        }
    }

    /// The current key's elements, in insertion order.
    ///
    /// # Errors
    /// Bytes that do not decode as `T`.
    pub fn get(&self) -> Result<Vec<T>, Error> {
        host::list_get(&self.name)
            .iter()
            .map(|b| T::from_bytes(b))
            .collect()
    }

    /// Appends an element.
    pub fn add(&self, value: &T) {
        host::list_add(&self.name, &value.to_bytes());
    }

    /// Replaces the elements.
    pub fn set(&self, values: &[T]) {
        let encoded: Vec<Vec<u8>> = values.iter().map(Codec::to_bytes).collect();
        host::list_set(&self.name, &encoded);
    }

    /// Clears the list.
    pub fn clear(&self) {
        host::clear(&self.name);
    }
}

/// A map per key.
#[derive(Debug, Clone)]
pub struct MapState<K, V> {
    name: String,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K: Codec, V: Codec> MapState<K, V> {
    /// Map state called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            _t: PhantomData,
        }
    }

    /// The value of `key`.
    ///
    /// # Errors
    /// Bytes that do not decode as `V`.
    pub fn get(&self, key: &K) -> Result<Option<V>, Error> {
        host::map_get(&self.name, &key.to_bytes())
            .map(|b| V::from_bytes(&b))
            .transpose()
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: &K, value: &V) {
        host::map_put(&self.name, &key.to_bytes(), &value.to_bytes());
    }

    /// Removes `key`.
    pub fn remove(&self, key: &K) {
        host::map_remove(&self.name, &key.to_bytes());
    }

    /// All entries, ordered by the encoded key bytes.
    ///
    /// # Errors
    /// Bytes that do not decode.
    pub fn entries(&self) -> Result<Vec<(K, V)>, Error> {
        host::map_entries(&self.name)
            .iter()
            .map(|(k, v)| Ok((K::from_bytes(k)?, V::from_bytes(v)?)))
            .collect()
    }

    /// Clears the map.
    pub fn clear(&self) {
        host::clear(&self.name);
    }
}

/// A value per key folded with a reduce function: `add(x)` stores
/// `reduce(current, x)`.
pub struct ReducingState<T> {
    inner: ValueState<T>,
    reduce: fn(T, T) -> T,
}

impl<T: Codec> ReducingState<T> {
    /// Reducing state called `name`.
    pub fn new(name: &str, reduce: fn(T, T) -> T) -> Self {
        Self {
            inner: ValueState::new(name),
            reduce,
        }
    }

    /// Folds `value` in and returns the new result.
    ///
    /// # Errors
    /// Stored bytes that do not decode.
    pub fn add(&self, value: T) -> Result<&Self, Error> {
        let next = match self.inner.get()? {
            Some(current) => (self.reduce)(current, value),
            None => value,
        };
        self.inner.set(&next);
        Ok(self)
    }

    /// The current result.
    ///
    /// # Errors
    /// Stored bytes that do not decode.
    pub fn get(&self) -> Result<Option<T>, Error> {
        self.inner.get()
    }

    /// Clears the state.
    pub fn clear(&self) {
        self.inner.clear();
    }
}

/// A value per key kept as an accumulator: `add(x)` folds an input into the
/// accumulator, `get()` turns the accumulator into a result.
pub struct AggregatingState<In, Acc, Out> {
    inner: ValueState<Acc>,
    create: fn() -> Acc,
    add: fn(&mut Acc, In),
    result: fn(&Acc) -> Out,
}

impl<In, Acc: Codec, Out> AggregatingState<In, Acc, Out> {
    /// Aggregating state called `name`.
    pub fn new(
        name: &str,
        create: fn() -> Acc,
        add: fn(&mut Acc, In),
        result: fn(&Acc) -> Out,
    ) -> Self {
        Self {
            inner: ValueState::new(name),
            create,
            add,
            result,
        }
    }

    /// Folds `value` into the accumulator.
    ///
    /// # Errors
    /// Stored bytes that do not decode.
    pub fn add(&self, value: In) -> Result<(), Error> {
        let mut acc = self.inner.get()?.unwrap_or_else(self.create);
        (self.add)(&mut acc, value);
        self.inner.set(&acc);
        Ok(())
    }

    /// The result for the accumulator, if anything was added.
    ///
    /// # Errors
    /// Stored bytes that do not decode.
    pub fn get(&self) -> Result<Option<Out>, Error> {
        Ok(self.inner.get()?.map(|a| (self.result)(&a)))
    }

    /// Clears the state.
    pub fn clear(&self) {
        self.inner.clear();
    }
}
