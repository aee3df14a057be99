//! The policy compiler (`portcullis-policy`) on arbitrary text: diagnostics or programs, never a
//! panic, never an "internal compiler error" (a section, failed or not, whose code does not
//! verify). Every program it emits must pass the data plane's verifier and loader (the data plane
//! refuses a whole snapshot otherwise), and must run in the VM, as its section, without panicking.
//!
//! The context has a named value (one secret), a fragment and a named backend, so documents that
//! refer to them get past the reference checks; the input's length picks the compile options.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_contract::program::{self, Section};
use portcullis_policy::compile::Options;
use portcullis_policy::{Context, SourceFile, compile_source, explain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let context = &contexts()[data.len() % 4];
    let compiled = compile_source(SourceFile::new("policy.xml", text), context);
    for diagnostic in compiled.report.errors.iter().chain(&compiled.report.warnings) {
        let _ = diagnostic.to_string();
        // The compiler verifies every section it builds, failed ones too; a section whose code
        // does not verify is its own bug, reported as such (and not the user's).
        assert!(!diagnostic.message.starts_with("internal compiler error"), "{diagnostic}\n{text}");
    }
    if compiled.programs.is_empty() {
        assert!(!compiled.report.errors.is_empty(), "a document that did not parse must say why");
        return;
    }
    let sections: Vec<Section> = compiled.programs.iter().map(|(section, _)| *section).collect();
    assert_eq!(sections, Section::ALL, "one entry per section, in order");
    let secrets = context.named_values.secret_values();
    for (section, program) in compiled.programs {
        let Some(program) = program else { continue };
        if let Err(error) = program::verify(&program) {
            panic!("the compiler emitted a {} program that does not verify: {error}", section.as_str());
        }
        let _ = explain::render_program(section, &program, &secrets);
        let Some(loaded) = portcullis_fuzz::load(program) else {
            panic!("the data plane refuses a {} program the compiler emitted", section.as_str());
        };
        portcullis_fuzz::run_loaded(loaded, section);
    }
});

/// The four contexts: strict, skipping unsupported policies, allowing unknown references, both.
fn contexts() -> &'static [Context; 4] {
    static CONTEXTS: OnceLock<[Context; 4]> = OnceLock::new();
    CONTEXTS.get_or_init(|| {
        let options =
            |skip_unsupported, allow_unknown_references| Options { skip_unsupported, allow_unknown_references };
        [options(false, false), options(true, false), options(false, true), options(true, true)]
            .map(portcullis_fuzz::policy_context)
    })
}
