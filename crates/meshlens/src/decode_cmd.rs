//! `meshlens decode`: hex frames in, one JSON object per frame out, in order.
//!
//! Invalid frames are output, not failures: they print `{"valid": false, "error": ...}` and the
//! exit status stays 0. Only usage errors (a bad `--channel-key`) exit non-zero.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;

use clap::Args;
use meshcore::report::{DecodeOptions, decode_to_json, parse_hex};
use serde_json::json;

use crate::keys::KeyArgs;

/// Longest input line accepted from stdin. A legal frame is at most 254 bytes (508 hex
/// digits); the margin allows for whitespace. Longer lines are reported and skipped, so a
/// hostile input cannot make the decoder buffer without bound.
const MAX_LINE: u64 = 16 * 1024;

/// Options of `meshlens decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    #[command(flatten)]
    keys: KeyArgs,
    /// Skip Ed25519 verification of adverts (`signature_valid` is then omitted).
    #[arg(long)]
    no_verify: bool,
    /// Frames as hex. Without any, frames are read from stdin, one per line.
    #[arg(value_name = "HEX")]
    frames: Vec<String>,
}

fn options(args: &DecodeArgs) -> DecodeOptions {
    DecodeOptions {
        keyring: args.keys.keyring(),
        regions: args.keys.regions(),
        verify_signatures: !args.no_verify,
    }
}

/// Decodes one line of input into its JSON output.
fn decode_line(line: &str, opts: &DecodeOptions) -> serde_json::Value {
    match parse_hex(line) {
        Ok(bytes) => decode_to_json(&bytes, opts),
        Err(e) => json!({"valid": false, "error": e.code(), "message": e.to_string()}),
    }
}

/// Runs the command.
pub fn run(args: DecodeArgs) -> ExitCode {
    let opts = options(&args);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = if args.frames.is_empty() {
        let stdin = std::io::stdin();
        let interactive = stdin.is_terminal();
        decode_stream(stdin.lock(), &mut out, &opts, interactive)
    } else {
        args.frames
            .iter()
            .try_for_each(|f| writeln!(out, "{}", decode_line(f, &opts)))
    };
    match result.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`meshlens decode | head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshlens decode: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads hex frames line by line; blank lines are skipped.
fn decode_stream(
    mut input: impl BufRead,
    out: &mut impl Write,
    opts: &DecodeOptions,
    flush_each: bool,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        let n = input.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if buf.last() != Some(&b'\n') && n as u64 == MAX_LINE {
            skip_rest_of_line(&mut input)?;
            let v = json!({"valid": false, "error": "line_too_long",
                "message": format!("input line longer than {MAX_LINE} bytes")});
            writeln!(out, "{v}")?;
            continue;
        }
        let value = match std::str::from_utf8(&buf) {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => decode_line(line, opts),
            Err(_) => json!({"valid": false, "error": "bad_hex", "message": "not a hex digit"}),
        };
        writeln!(out, "{value}")?;
        if flush_each {
            out.flush()?;
        }
    }
}

fn skip_rest_of_line(input: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let len = chunk.len();
                input.consume(len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_stream(input: &[u8]) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        decode_stream(input, &mut out, &DecodeOptions::default(), false).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn overlong_lines_are_reported_and_skipped() {
        let mut input = vec![b'A'; MAX_LINE as usize * 3];
        input.extend_from_slice(b"\n0D04B891647EBB40BA70\n");
        let out = run_stream(&input);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["error"], "line_too_long");
        assert_eq!(out[1]["packet_hash"], "bbf95563c6eec9fe");
    }

    #[test]
    fn non_utf8_and_blank_lines() {
        let out = run_stream(b"\xff\xfe\n\n   \r\n0d04b891647ebb40ba70");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["error"], "bad_hex");
        assert_eq!(out[1]["valid"], true);
    }
}
