//! The embedded DejaVu Sans font, so figures render on machines with no fonts installed.

use std::sync::OnceLock;

use plotters::style::{register_font, FontStyle};

use crate::error::{PlotError, Result};

/// The family name every text style of this crate uses.
pub(crate) const FAMILY: &str = "sans-serif";

const REGULAR: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const BOLD: &[u8] = include_bytes!("../assets/DejaVuSans-Bold.ttf");

static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers the embedded fonts with plotters (once per process).
pub(crate) fn ensure_registered() -> Result<()> {
    REGISTERED
        .get_or_init(|| {
            register_font(FAMILY, FontStyle::Normal, REGULAR)
                .map_err(|_| "DejaVuSans.ttf is not a valid font".to_string())?;
            register_font(FAMILY, FontStyle::Bold, BOLD)
                .map_err(|_| "DejaVuSans-Bold.ttf is not a valid font".to_string())
        })
        .clone()
        .map_err(PlotError::Font)
}
