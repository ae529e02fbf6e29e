//! Load progress: an indicatif bar on a terminal; plain lines otherwise (logs,
//! pipes, the tests), `loaded X/Y (P%), R images/s, ETA T` twice a second.

use std::fmt;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

const LINE_INTERVAL: Duration = Duration::from_millis(500);

/// Progress over all files found: a file counts as done once loaded, found
/// already loaded or failed. The rate and ETA count this run's work only.
/// Shared by the loader's threads.
pub enum Progress {
    Bar(ProgressBar),
    Lines(Mutex<Lines>),
}

pub struct Lines {
    total: usize,
    done: usize,
    done_at_start: usize,
    started: Instant,
    last_report: Option<(Instant, usize)>,
}

impl Progress {
    pub fn new(total: usize, done_at_start: usize) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total as u64).with_position(done_at_start as u64);
            let style = ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} ({percent}%), {rate}, ETA {eta}",
            )
            .expect("the template is valid")
            .with_key("rate", |state: &ProgressState, out: &mut dyn fmt::Write| {
                let _ = write!(out, "{:.1} images/s", state.per_sec());
            });
            bar.set_style(style);
            bar.reset_eta();
            Progress::Bar(bar)
        } else {
            Progress::Lines(Mutex::new(Lines {
                total,
                done: done_at_start,
                done_at_start,
                started: Instant::now(),
                last_report: None,
            }))
        }
    }

    pub fn advance(&self) {
        match self {
            Progress::Bar(bar) => bar.inc(1),
            Progress::Lines(lines) => {
                let mut lines = lines.lock().unwrap();
                lines.done += 1;
                if lines
                    .last_report
                    .is_none_or(|(at, _)| at.elapsed() >= LINE_INTERVAL)
                {
                    lines.report();
                }
            }
        }
    }

    /// A message line (a failed file) that does not garble the bar.
    pub fn println(&self, message: &str) {
        match self {
            Progress::Bar(bar) => bar.println(message),
            Progress::Lines(_) => eprintln!("{message}"),
        }
    }

    /// Reports the final state unless the last line already did.
    pub fn finish(&self) {
        match self {
            Progress::Bar(bar) => bar.finish(),
            Progress::Lines(lines) => {
                let mut lines = lines.lock().unwrap();
                if lines.done > lines.done_at_start
                    && lines.last_report.is_none_or(|(_, done)| done != lines.done)
                {
                    lines.report();
                }
            }
        }
    }
}

impl Lines {
    fn report(&mut self) {
        let processed = (self.done - self.done_at_start) as f64;
        let rate = processed / self.started.elapsed().as_secs_f64().max(1e-3);
        let remaining = (self.total - self.done) as f64;
        eprintln!(
            "loaded {}/{} ({:.1}%), {:.1} images/s, ETA {}",
            self.done,
            self.total,
            100.0 * self.done as f64 / self.total as f64,
            rate,
            format_duration(remaining / rate)
        );
        self.last_report = Some((Instant::now(), self.done));
    }
}

/// `45s`, `1m43s`, `2h05m`.
fn format_duration(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(super::format_duration(44.6), "45s");
        assert_eq!(super::format_duration(103.0), "1m43s");
        assert_eq!(super::format_duration(7500.0), "2h05m");
    }
}
