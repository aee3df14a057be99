//! Tests of the policy VM.
