//! Runs a study on a model: every respondent, question and sample, written as it finishes.
