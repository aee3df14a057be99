//! The policy compiler: APIM policy XML (with scopes, fragments, named values and policy
//! expressions) to verified [`portcullis_contract::program::Program`]s. Sans-IO: it takes
//! source text and returns programs or diagnostics.

pub mod cli;
pub mod code;
pub mod compile;
pub mod expr;
mod fuse;
pub mod scope;
pub mod xml;
