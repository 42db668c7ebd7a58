//! weir-job
