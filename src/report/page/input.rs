//! What the page is made from: each run's manifest, study, finished and failed respondents.

use crate::report::data::{Distribution, Manifest, Record, ShareBaseline};
use crate::study::{Person, Study};

/// One respondent's answers, as the journal holds them.
pub struct Respondent<'a> {
    pub person: &'a Person,
    pub records: &'a [Record],
    pub distributions: &'a [Distribution],
}

/// One run's part of the page.
pub struct RunInput<'a> {
    /// The run's output directory, as the heading names it.
    pub name: String,
    pub manifest: &'a Manifest,
    /// The study, with the run's seed, mode and samples.
    pub study: &'a Study,
    /// Respondents that finished, in population order.
    pub respondents: Vec<Respondent<'a>>,
    /// Respondents that failed, and why.
    pub failed: Vec<(usize, String)>,
    /// The population-share baseline of compared questions (`[compare] baseline = "share"`).
    pub share: &'a [ShareBaseline],
}
