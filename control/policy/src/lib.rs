//! The policy compiler: APIM policy XML (with scopes, fragments, named values and policy
//! expressions) to verified [`portcullis_contract::program::Program`]s. Sans-IO: it takes
//! source text and returns programs or diagnostics; it reads no file and knows no config
//! directory (control's config loader and `portcullis policy` do that, and call it).
//!
//! - [`compile_source`]: the entry point for one document or fragment on its own (source text
//!   in, diagnostics or a verified program per section out).
//! - [`scope`] and [`compile::compile_section`]: what a config load uses to merge the scopes
//!   global → product → API → operation and compile each merged section.
//! - [`diagnostic`]: file:line:col messages with a caret excerpt; [`named_values`]: `{{name}}`.
#![forbid(unsafe_code)]

pub mod code;
pub mod compile;
pub mod diagnostic;
pub mod explain;
pub mod expr;
mod fuse;
pub mod named_values;
pub mod scope;
mod standalone;
pub mod xml;

pub use diagnostic::{Diagnostic, SourceFile};
pub use named_values::{NamedValue, NamedValues};
pub use standalone::{Compiled, Context, compile_document, compile_source};
