//! NetworkPolicy evaluation.
