//! Where captures come from: standard input (`-`), pipes and FIFOs give the
//! same output as the file; a capture truncated while it is replayed ends
//! the run with a one-line error, never a SIGBUS.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{SEGWATCH, root};

fn sample() -> PathBuf {
    root().join("tests/fixtures/hospital-sample.pcap")
}

fn policy() -> PathBuf {
    root().join("policies/example-hospital.toml")
}

fn ok(out: Output) -> Output {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `segwatch ARGS` with standard input from the file `stdin`.
fn with_stdin_file(args: &[&str], stdin: &Path) -> Output {
    let file = std::fs::File::open(stdin).unwrap();
    ok(Command::new(SEGWATCH)
        .args(args)
        .stdin(file)
        .output()
        .unwrap())
}

/// `cat FILE | segwatch ARGS`, through a shell: standard input is a pipe.
fn through_cat(args: &[&str], file: &Path) -> Output {
    let mut line = format!("cat '{}' | '{SEGWATCH}'", file.display());
    for arg in args {
        line.push_str(&format!(" '{arg}'"));
    }
    ok(Command::new("sh").arg("-c").arg(line).output().unwrap())
}

#[test]
fn replay_reads_standard_input_from_a_file_or_a_pipe_like_the_file() {
    let policy = policy();
    let policy = policy.to_str().unwrap();
    let sample = sample();
    let from_file = ok(Command::new(SEGWATCH)
        .args(["replay", "--policy", policy])
        .arg(&sample)
        .output()
        .unwrap());
    assert!(!from_file.stdout.is_empty());
    let args = ["replay", "--policy", policy, "-"];
    let redirected = with_stdin_file(&args, &sample);
    assert_eq!(redirected.stdout, from_file.stdout, "stdin from the file");
    let piped = through_cat(&args, &sample);
    assert_eq!(piped.stdout, from_file.stdout, "stdin from cat");
    // Twice as one capture: standard input, then the file again.
    let twice = through_cat(
        &["replay", "--policy", policy, "-", sample.to_str().unwrap()],
        &sample,
    );
    let twice_from_files = ok(Command::new(SEGWATCH)
        .args(["replay", "--policy", policy])
        .args([&sample, &sample])
        .output()
        .unwrap());
    assert_eq!(twice.stdout, twice_from_files.stdout);
}

#[test]
fn replay_reads_a_fifo_like_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("capture.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let policy = policy();
    let sample = sample();
    let from_file = ok(Command::new(SEGWATCH)
        .args(["replay", "--policy"])
        .args([&policy, &sample])
        .output()
        .unwrap());
    let child = Command::new(SEGWATCH)
        .args(["replay", "--policy"])
        .args([&policy, &fifo])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Opening the FIFO for writing waits for the reader.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer.write_all(&std::fs::read(&sample).unwrap()).unwrap();
    drop(writer);
    let out = ok(child.wait_with_output().unwrap());
    assert_eq!(out.stdout, from_file.stdout);
}

#[test]
fn learn_and_diff_read_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy();
    let sample = sample();
    let learned_from_file = dir.path().join("from-file.toml");
    let learned_from_pipe = dir.path().join("from-pipe.toml");
    ok(Command::new(SEGWATCH)
        .args(["learn", "--zones"])
        .arg(&policy)
        .arg("-o")
        .args([&learned_from_file, &sample])
        .output()
        .unwrap());
    through_cat(
        &[
            "learn",
            "--zones",
            policy.to_str().unwrap(),
            "-o",
            learned_from_pipe.to_str().unwrap(),
            "-",
        ],
        &sample,
    );
    // The same policy; only its first comment names the capture.
    let from_pipe = std::fs::read_to_string(&learned_from_pipe).unwrap();
    let from_file = std::fs::read_to_string(&learned_from_file).unwrap();
    assert!(from_pipe.starts_with("# Learned by segwatch learn"));
    assert_eq!(
        from_pipe.split_once('\n').unwrap().1,
        from_file.split_once('\n').unwrap().1
    );

    let diff_args = |capture: &str| {
        vec![
            "diff".to_string(),
            "--policy".into(),
            policy.display().to_string(),
            "--candidate".into(),
            learned_from_file.display().to_string(),
            capture.to_string(),
        ]
    };
    let from_file = Command::new(SEGWATCH)
        .args(diff_args(sample.to_str().unwrap()))
        .output()
        .unwrap();
    let args = diff_args("-");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let piped = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat '{}' | '{SEGWATCH}' {}",
            sample.display(),
            args.iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(" ")
        ))
        .output()
        .unwrap();
    assert_eq!(piped.status.code(), from_file.status.code());
    assert!(!from_file.stdout.is_empty());
    assert_eq!(piped.stdout, from_file.stdout);
}

/// Issue 15.1: `replay --output` naming its own input truncated the capture
/// while it was mapped, and the process died of SIGBUS without a word.
/// Whatever `replay` makes of such an output (the file is truncated before
/// the first frame is read, so this needs no timing), it must exit with a
/// status and a one-line error naming the file.
#[test]
fn regression_15_1_a_capture_truncated_under_replay_is_an_error_not_sigbus() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.pcap");
    std::fs::copy(sample(), &capture).unwrap();
    let out = Command::new(SEGWATCH)
        .args(["replay", "--policy"])
        .arg(policy())
        .arg("--output")
        .args([&capture, &capture])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|code| code != 0),
        "exited by {:?}: {stderr}",
        out.status
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("segwatch: error"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(capture.to_str().unwrap()), "{stderr}");
}
