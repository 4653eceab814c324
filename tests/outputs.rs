//! Files the commands write (issue 15.1): an output that is one of the
//! inputs is refused before anything is written; a regular output file is
//! put in place whole when the command ends, whatever its exit status;
//! anything else (`/dev/stdout`, a FIFO) is written directly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{SEGWATCH, root};

fn sample() -> PathBuf {
    root().join("tests/fixtures/hospital-sample.pcap")
}

fn policy() -> PathBuf {
    root().join("policies/example-hospital.toml")
}

fn segwatch(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(SEGWATCH).args(args).output().unwrap()
}

fn os(path: &Path) -> &std::ffi::OsStr {
    path.as_os_str()
}

/// The one error line of a refused output, which names the output and the
/// input it is.
fn assert_refused(out: &Output, output: &Path, input: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("segwatch: error"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(&*output.to_string_lossy())
            && errors[0].contains(&*input.to_string_lossy())
            && errors[0].contains("same file"),
        "{stderr}"
    );
}

fn no_temporary_files(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `replay --output`, `--inventory` and `learn --output` naming an input
/// capture, through a symbolic link or a hard link, are refused and leave
/// the capture as it was.
#[test]
fn regression_15_1_an_output_that_is_an_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.pcap");
    std::fs::copy(sample(), &capture).unwrap();
    let original = std::fs::read(&capture).unwrap();
    let soft = dir.path().join("soft.jsonl");
    std::os::unix::fs::symlink(&capture, &soft).unwrap();
    let hard = dir.path().join("hard.jsonl");
    std::fs::hard_link(&capture, &hard).unwrap();
    let (p, c) = (policy(), capture.clone());
    for output in [&soft, &hard] {
        for flag in ["--output", "--inventory"] {
            let out = segwatch(&[
                "replay".as_ref(),
                "--policy".as_ref(),
                os(&p),
                flag.as_ref(),
                os(output),
                os(&c),
            ]);
            assert_refused(&out, output, &capture);
            assert!(out.stdout.is_empty(), "nothing is judged");
        }
        let out = segwatch(&[
            "learn".as_ref(),
            "--zones".as_ref(),
            os(&p),
            "-o".as_ref(),
            os(output),
            os(&c),
        ]);
        assert_refused(&out, output, &capture);
    }
    // The policy is an input too.
    let out = segwatch(&[
        "replay".as_ref(),
        "--policy".as_ref(),
        os(&p),
        "--output".as_ref(),
        os(&p),
        os(&c),
    ]);
    assert_refused(&out, &p, &p);
    assert_eq!(std::fs::read(&capture).unwrap(), original);
    no_temporary_files(dir.path());
}

/// A capture with a corrupt record after good ones: the events written
/// before it are in the output file at exit status 2, and the file is put
/// in place whole by a rename, replacing the old one, with nothing left
/// beside it.
#[test]
fn an_output_file_is_put_in_place_whatever_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("corrupt.pcap");
    let mut bytes = std::fs::read(sample()).unwrap();
    // A record header claiming a 16 MB frame after the sample's records:
    // corrupt, not cut.
    let mut record = [0u8; 16];
    record[8..12].copy_from_slice(&(16u32 << 20).to_le_bytes());
    record[12..16].copy_from_slice(&(16u32 << 20).to_le_bytes());
    bytes.extend_from_slice(&record);
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&capture, &bytes).unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, "an old run\n").unwrap();
    // A file written in place would change under every name it has; one
    // put in place by a rename leaves the old file to its other names.
    let old_name = dir.path().join("old-events.jsonl");
    std::fs::hard_link(&events, &old_name).unwrap();
    let p = policy();
    let out = segwatch(&[
        "replay".as_ref(),
        "-q".as_ref(),
        "--policy".as_ref(),
        os(&p),
        "--output".as_ref(),
        os(&events),
        os(&capture),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("corrupt"), "{stderr}");
    let from_the_good_capture = crate::common::replay_stdout(&p, &[sample()], &[]);
    assert!(!from_the_good_capture.is_empty());
    assert_eq!(std::fs::read(&events).unwrap(), from_the_good_capture);
    assert_eq!(std::fs::read(&old_name).unwrap(), b"an old run\n");
    no_temporary_files(dir.path());
}

/// `--output /dev/stdout` writes through to standard output; a FIFO is
/// written, not replaced.
#[test]
fn outputs_that_are_not_regular_files_are_written_directly() {
    let p = policy();
    let s = sample();
    let expected = crate::common::replay_stdout(&p, std::slice::from_ref(&s), &[]);
    let out = segwatch(&[
        "replay".as_ref(),
        "-q".as_ref(),
        "--policy".as_ref(),
        os(&p),
        "--output".as_ref(),
        "/dev/stdout".as_ref(),
        os(&s),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, expected);

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("events.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let out = segwatch(&[
        "replay".as_ref(),
        "-q".as_ref(),
        "--policy".as_ref(),
        os(&p),
        "--output".as_ref(),
        os(&fifo),
        os(&s),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(reader.join().unwrap(), expected);
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::metadata(&fifo).unwrap().file_type()
    ));
}
