//! Showing a classic-builder build as it runs: the current step of N with its elapsed time on
//! a status line (on a terminal), every output line above it, and on failure the failing step
//! with its last lines.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bollard::models::BuildInfo;
use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};

/// How many of a step's last output lines a failure shows.
const TAIL_LINES: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Terminal,
    Plain,
    Quiet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub number: usize,
    pub total: usize,
    pub instruction: String,
}

/// `Step 3/12 : RUN apt-get …` (Docker's classic builder) or `STEP 3/12: RUN apt-get …`
/// (buildah, Podman's) → the step.
pub(crate) fn parse_step(line: &str) -> Option<Step> {
    let (counts, instruction) = match line.strip_prefix("Step ") {
        Some(rest) => rest.split_once(" : ")?,
        None => line.strip_prefix("STEP ")?.split_once(": ")?,
    };
    let (number, total) = counts.split_once('/')?;
    Some(Step {
        number: number.parse().ok()?,
        total: total.parse().ok()?,
        instruction: instruction.trim().to_string(),
    })
}

/// What a build stream ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub step: Option<Step>,
    pub message: String,
    pub last_lines: Vec<String>,
}

pub(crate) struct Progress {
    mode: Mode,
    bar: ProgressBar,
    step: Option<Step>,
    step_started: Instant,
    tail: VecDeque<String>,
    partial: String,
    image_id: Option<String>,
}

impl Progress {
    pub(crate) fn new(mode: Mode, label: &str) -> Self {
        let bar = match mode {
            Mode::Terminal => {
                // Cleared however the build ends, also when it is dropped (Ctrl-C).
                let bar = ProgressBar::new_spinner().with_finish(ProgressFinish::AndClear);
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
                        .expect("valid template"),
                );
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            }
            Mode::Plain | Mode::Quiet => ProgressBar::hidden(),
        };
        bar.set_prefix(label.to_string());
        Progress {
            mode,
            bar,
            step: None,
            step_started: Instant::now(),
            tail: VecDeque::with_capacity(TAIL_LINES),
            partial: String::new(),
            image_id: None,
        }
    }

    /// Takes one message from the engine; an error message ends the build as a failure.
    pub(crate) fn update(&mut self, info: &BuildInfo) -> Result<(), StepFailure> {
        if let Some(id) = info.aux.as_ref().and_then(|aux| aux.id.clone()) {
            self.image_id = Some(id);
        }
        if let Some(text) = &info.stream {
            self.partial.push_str(text);
            while let Some(end) = self.partial.find('\n') {
                let line: String = self.partial.drain(..=end).collect();
                self.line(line.trim_end_matches(['\n', '\r']));
            }
        }
        if let Some(status) = &info.status {
            self.line(status);
        }
        match info.error_detail.as_ref().and_then(|d| d.message.clone()) {
            Some(message) => Err(self.failure(message)),
            None => Ok(()),
        }
    }

    fn line(&mut self, line: &str) {
        if let Some(step) = parse_step(line) {
            if let Some(previous) = &self.step
                && self.mode == Mode::Plain
            {
                plain(&format!(
                    "  step {}/{} took {}",
                    previous.number,
                    previous.total,
                    format_duration(self.step_started.elapsed())
                ));
            }
            self.bar.set_message(format!(
                "Step {}/{}: {}",
                step.number, step.total, step.instruction
            ));
            self.step = Some(step);
            self.step_started = Instant::now();
            self.tail.clear();
        } else if !line.trim().is_empty() {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(line.to_string());
        }
        match self.mode {
            Mode::Terminal => self.bar.println(line),
            Mode::Plain => plain(line),
            Mode::Quiet => {}
        }
    }

    /// The failure as it stands now (also used when the stream breaks off).
    pub(crate) fn failure(&mut self, message: String) -> StepFailure {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.line(&rest);
        }
        self.bar.finish_and_clear();
        StepFailure {
            step: self.step.clone(),
            message,
            last_lines: self.tail.iter().cloned().collect(),
        }
    }

    /// The image id the build reported, once it has finished.
    pub(crate) fn finish(self) -> Option<String> {
        self.bar.finish_and_clear();
        self.image_id
    }
}

/// A line of plain output. Whoever reads it may have gone (`devbox build | head`): the build
/// goes on, so a closed stdout is not an error here.
fn plain(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

pub(crate) fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 60 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

pub(crate) fn format_size(bytes: i64) -> String {
    let bytes = bytes as f64;
    match bytes {
        b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} kB", b / 1e3),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ErrorDetail, ImageId};

    fn stream(text: &str) -> BuildInfo {
        BuildInfo {
            stream: Some(text.to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn buildahs_steps_are_parsed() {
        assert_eq!(
            parse_step("STEP 2/3: RUN echo first-step-output && sleep 2"),
            Some(Step {
                number: 2,
                total: 3,
                instruction: "RUN echo first-step-output && sleep 2".into()
            })
        );
        assert_eq!(parse_step("STEP"), None);
        assert_eq!(parse_step("STEPS 1/2: x"), None);
    }

    #[test]
    fn steps_are_parsed() {
        assert_eq!(
            parse_step("Step 3/12 : RUN apt-get update"),
            Some(Step {
                number: 3,
                total: 12,
                instruction: "RUN apt-get update".into()
            })
        );
        assert_eq!(parse_step(" ---> Running in abc"), None);
    }

    #[test]
    fn a_failure_names_the_step_and_its_last_lines() {
        let mut progress = Progress::new(Mode::Quiet, "test");
        progress.update(&stream("Step 1/2 : FROM x\n")).unwrap();
        progress
            .update(&stream(
                "Step 2/2 : RUN false\n ---> Running in 1\npartial ",
            ))
            .unwrap();
        progress.update(&stream("line\nboom\n")).unwrap();
        let failure = progress
            .update(&BuildInfo {
                error_detail: Some(ErrorDetail {
                    message: Some("returned a non-zero code: 1".into()),
                    code: Some(1),
                }),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(failure.step.unwrap().number, 2);
        assert_eq!(failure.message, "returned a non-zero code: 1");
        assert_eq!(
            failure.last_lines,
            vec![" ---> Running in 1", "partial line", "boom"]
        );
    }

    #[test]
    fn the_image_id_comes_from_aux() {
        let mut progress = Progress::new(Mode::Quiet, "test");
        progress
            .update(&BuildInfo {
                aux: Some(ImageId {
                    id: Some("sha256:abc".into()),
                }),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(progress.finish().as_deref(), Some("sha256:abc"));
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(format_size(1_234_000_000), "1.23 GB");
        assert_eq!(format_size(5_600_000), "5.6 MB");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m05s");
    }
}
