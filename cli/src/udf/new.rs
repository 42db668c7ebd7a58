//! `weir udf new`: not yet.
