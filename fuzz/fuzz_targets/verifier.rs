//! The bytecode verifier on arbitrary programs: the first byte picks the section, the rest is a
//! postcard-encoded `Program` (the form a snapshot carries; the seeds are compiled policies).
//!
//! Checked: the verifier and the data plane's loader never panic; the loader refuses what the
//! verifier refuses; a verified program's stack stays within its declared maximum; and every
//! program the data plane loads runs in the VM, as its section, without panicking (the VM
//! trusts verified programs and checks no index again, so a panic there is a verifier bug).

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_contract::program::{self, Program, Section};
use portcullis_dataplane::policy::{LoadError, LoadedProgram};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let section = Section::ALL[usize::from(selector) % Section::ALL.len()];
    let Ok(program) = postcard::from_bytes::<Program>(rest) else { return };
    let _ = portcullis_policy::explain::render_program(section, &program, &[]);
    let verified = program::verify(&program);
    match LoadedProgram::load(0, program.clone()) {
        Ok(_) => assert!(verified.is_ok(), "the loader accepted a program the verifier refuses"),
        Err(LoadError::Verify { error, .. }) => assert_eq!(Err(error), verified, "loader and verifier disagree"),
        Err(LoadError::Regex { .. }) => assert!(verified.is_ok(), "regexes are compiled only after verifying"),
        Err(error) => panic!("unexpected load error {error}"),
    }
    if verified.is_err() {
        return;
    }
    let deepest = program::stack_depth_max(&program.ops).unwrap_or_else(|error| panic!("verified, yet {error}"));
    assert!(deepest <= u32::from(program.max_stack));
    if let Some(loaded) = portcullis_fuzz::load(program) {
        portcullis_fuzz::run_loaded(loaded, section);
    }
});
