//! Progress of the offline commands, on stderr so that their output stays
//! clean: a bar on a terminal (events done, rate, time left), otherwise a
//! line every `ENSPACE_PROGRESS_EVERY` seconds (default 5).

use std::io::IsTerminal;

use enspace_core::progress::{Lines, Progress, every_from_env};
use indicatif::{ProgressBar, ProgressStyle};

/// Progress of work on `what` ("events verified"), shown the way stderr
/// can show it.
pub fn shown(what: &str) -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(&format!(
            "{{bar:40}} {{human_pos}}/{{human_len}} {what}, {{per_sec}}, {{eta}} left"
        )) {
            bar.set_style(style);
        }
        Box::new(Bar(bar))
    } else {
        Box::new(Lines::new(what, every_from_env(), |line: &str| {
            eprintln!("{line}")
        }))
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn advance(&self, done: u64, total: u64) {
        if total > 0 {
            self.0.set_length(total);
        }
        self.0.set_position(done);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
