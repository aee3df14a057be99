//! Writes the generated seeds under `fuzz/seeds/`: the byte-level inputs of the HTTP, URL and
//! admin targets (written here rather than by hand, as they hold CR, LF and selector bytes),
//! real programs for `verifier` (the policy seeds compiled), and real snapshots for
//! `snapshot_decode` (the quickstart config and variants of it). The policy seeds themselves
//! (`seeds/policy_compile/`) are policy documents copied from the repository's examples, benches
//! and tests, and are only read here.
//!
//! Run it after changing a format (`cargo run --manifest-path fuzz/Cargo.toml --example
//! write_seeds`); it replaces the files it writes and leaves `seeds/policy_compile/` alone.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use portcullis_contract::model::Config;
use portcullis_contract::program::{Program, Section};
use portcullis_contract::snapshot;
use portcullis_policy::compile::Options;
use portcullis_policy::{SourceFile, compile_source};

/// Where the generated snapshot's creation time lies: zeroed, so that re-running the writer
/// changes no committed seed.
const CREATED_UNIX_MS_RANGE: std::ops::Range<usize> = 40..48;
/// Seed programs added to the quickstart config for the `programs` snapshot seed: enough to
/// carry every kind of constant and op table, few enough to keep the seed a few KiB.
const SNAPSHOT_EXTRA_PROGRAMS: usize = 12;

fn main() -> Result<()> {
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    write_all(&seeds.join("request_head"), &request_seeds())?;
    write_all(&seeds.join("response_head"), &response_seeds())?;
    write_all(&seeds.join("chunked"), &chunked_seeds())?;
    write_all(&seeds.join("url"), &url_seeds())?;
    write_all(&seeds.join("admin_request"), &admin_seeds())?;
    let programs = compiled_programs(&seeds.join("policy_compile"))?;
    write_all(&seeds.join("verifier"), &verifier_seeds(&programs)?)?;
    write_all(&seeds.join("snapshot_decode"), &snapshot_seeds(&programs)?)?;
    Ok(())
}

/// Replaces the files of `dir` with `seeds` (name, bytes).
fn write_all(dir: &Path, seeds: &[(String, Vec<u8>)]) -> Result<()> {
    if dir.is_dir() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).with_context(|| format!("writing {name} in {}", dir.display()))?;
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
    Ok(())
}

/// Numbered seeds from byte strings, each behind `prefix` (the targets' selector bytes).
fn numbered(stem: &str, prefix: &[u8], inputs: &[&[u8]]) -> Vec<(String, Vec<u8>)> {
    inputs.iter().enumerate().map(|(i, input)| (format!("{stem}-{i:02}"), [prefix, input].concat())).collect()
}

fn request_seeds() -> Vec<(String, Vec<u8>)> {
    let heads: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: gw.example\r\n\r\n",
        b"GET /echo/users/42?x=1&y=two%20three HTTP/1.1\r\nHost: gw.example:8080\r\nAccept: */*\r\n\r\n",
        b"POST /echo/orders HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
        b"PUT /echo/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET http://gw.example:80/echo?q HTTP/1.1\r\nHost: other\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n",
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"POST /up HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 10, 10\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"CONNECT gw:443 HTTP/1.1\r\nHost: gw:443\r\n\r\n",
        b"GET / HTTP/1.1\nHost: gw\n\n",
        b"GET /partial HTTP/1.1\r\nHost: gw\r\nX-A: ",
    ];
    let mut seeds = numbered("default", &[0], heads);
    // Odd selector: small limits (head 16 + 8*byte, target 1 + 4*byte, headers 1 + byte % 100).
    seeds.extend(numbered("limits", &[1, 8, 4, 2], &heads[..4]));
    seeds
}

fn response_seeds() -> Vec<(String, Vec<u8>)> {
    let heads: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 301 Moved Permanently\r\nLocation: http://gw/x\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 502 \r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: ",
    ];
    numbered("response", &[], heads)
}

fn chunked_seeds() -> Vec<(String, Vec<u8>)> {
    let bodies: &[&[u8]] = &[
        b"5;ext=1;x=\"q\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\nMore: y\r\n\r\n",
        b"0\r\n\r\n",
        b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
        b"1 ; a = \"q \\\" s\" ; b\r\nx\r\n0\r\n\r\n",
        b"0000000000000005\r\nhello\r\n0\r\n\r\n",
        b"fffffffffffffffff\r\n",
        b"5\nhello\r\n",
        b"0\r\nno colon\r\n\r\n",
    ];
    // First byte: how many cut lengths follow (0-7).
    let mut seeds = numbered("whole", &[0], bodies);
    seeds.extend(numbered("split", &[3, 2, 7, 1], &bodies[..4]));
    seeds
}

fn url_seeds() -> Vec<(String, Vec<u8>)> {
    let targets: &[&[u8]] = &[
        b"/echo/users/42?x=1&y=two%20three#frag",
        b"http://gw.example:8080/a/b?c=d",
        b"https://gw?q=1",
        b"*",
        b"/p%2Fq%zz%4?a+b=c%2bd&&=e&f",
        b"/\xc3\xa9t\xc3\xa9%C3%A9%ff",
        b"?#?#",
    ];
    numbered("target", &[], targets)
}

fn admin_seeds() -> Vec<(String, Vec<u8>)> {
    let lines: &[&[u8]] = &[
        b"{\"command\":\"status\"}\n",
        b" {\"command\": \"reload\"} ",
        b"{\"command\":\"xdp-status\"}",
        b"{\"command\":\"block\",\"prefix\":\"192.0.2.0/24\",\"seconds\":60}\n",
        b"{\"command\":\"block\",\"prefix\":\"2001:db8::/32\"}",
        b"{\"command\":\"unblock\",\"prefix\":\"::1\"}",
        b"{\"command\":\"restart\"}",
        b"10.0.0.1-10.0.3.255",
    ];
    numbered("line", &[], lines)
}

/// Every program the policy seeds compile to, with its section, in file order.
fn compiled_programs(dir: &Path) -> Result<Vec<(String, Section, Program)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let context = portcullis_fuzz::policy_context(Options::default());
    let mut programs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let stem = file.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
        let compiled = compile_source(SourceFile::new(&file, text), &context);
        for (section, program) in compiled.programs {
            if let Some(program) = program {
                programs.push((stem.clone(), section, program));
            }
        }
    }
    Ok(programs)
}

/// The largest program of each policy seed (a few dozen seeds, each a real compiler output),
/// behind its section's selector byte.
fn verifier_seeds(programs: &[(String, Section, Program)]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut largest: Vec<&(String, Section, Program)> = Vec::new();
    for entry in programs {
        match largest.iter_mut().find(|kept| kept.0 == entry.0) {
            Some(kept) if kept.2.ops.len() < entry.2.ops.len() => *kept = entry,
            Some(_) => {}
            None => largest.push(entry),
        }
    }
    let mut seeds = Vec::with_capacity(largest.len());
    for (stem, section, program) in largest {
        let selector = Section::ALL.iter().position(|s| s == section).unwrap_or_default() as u8;
        seeds
            .push((format!("{stem}-{}", section.as_str()), [&[selector][..], &postcard::to_stdvec(program)?].concat()));
    }
    Ok(seeds)
}

/// The quickstart config as control compiles it, an empty one, and the quickstart with some
/// compiled seed programs added; each as a whole file (selector 0) and as a payload (selector 1).
fn snapshot_seeds(programs: &[(String, Section, Program)]) -> Result<Vec<(String, Vec<u8>)>> {
    let quickstart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let provided = portcullis_control::config::check_values(true);
    let config = match portcullis_control::config::load_seeded(&quickstart, &provided, [1, 2]) {
        Ok(config) => config,
        Err(diagnostics) => bail!("the quickstart config does not load:\n{diagnostics}"),
    };
    let mut with_programs = config.clone();
    let small = programs.iter().filter(|(_, _, program)| (2..40).contains(&program.ops.len()));
    with_programs.programs.extend(small.take(SNAPSHOT_EXTRA_PROGRAMS).map(|(_, _, program)| program.clone()));
    let mut seeds = Vec::new();
    for (name, config) in [("quickstart", config), ("empty", Config::empty("empty")), ("programs", with_programs)] {
        config.validate().with_context(|| format!("the {name} seed config does not validate"))?;
        let mut file = snapshot::encode(1, &config)?;
        file[CREATED_UNIX_MS_RANGE].fill(0);
        seeds.push((format!("{name}-file"), [&[0][..], &file].concat()));
        seeds.push((format!("{name}-payload"), [&[1][..], &postcard::to_stdvec(&config)?].concat()));
    }
    Ok(seeds)
}
