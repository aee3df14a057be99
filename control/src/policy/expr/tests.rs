//! Tests of the expression compiler: emitted ops, verification, types and errors.

use super::*;
