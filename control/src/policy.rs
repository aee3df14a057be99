//! `portcullis policy check|explain`: the policy compiler (the `portcullis-policy` crate) on
//! files and config directories.

pub mod cli;
