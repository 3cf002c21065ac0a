//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::RgbImage;
use plotters::style::RGBColor;

/// A path under tests/fixtures.
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// An empty scratch folder for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("plot-tests/{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}

/// Decodes a PNG, failing the test if it is not one.
pub fn load_png(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{} is not a readable PNG: {e}", path.display()))
        .to_rgb8()
}

/// The colour at a pixel.
pub fn pixel(img: &RgbImage, (x, y): (i32, i32)) -> RGBColor {
    let p = img.get_pixel(x as u32, y as u32);
    RGBColor(p[0], p[1], p[2])
}

/// Variance of the pixels' grey levels: near 0 for a blank image.
pub fn grey_variance(img: &RgbImage) -> f64 {
    let greys: Vec<f64> = img
        .pixels()
        .map(|p| (p[0] as f64 + p[1] as f64 + p[2] as f64) / 3.0)
        .collect();
    let mean = greys.iter().sum::<f64>() / greys.len() as f64;
    greys.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / greys.len() as f64
}

/// Asserts that `path` is a PNG of `size` pixels that is not blank.
pub fn assert_valid_png(path: &Path, size: (u32, u32)) {
    let img = load_png(path);
    assert_eq!(img.dimensions(), size, "{}", path.display());
    let variance = grey_variance(&img);
    assert!(
        variance > 100.0,
        "{} looks blank (grey variance {variance})",
        path.display()
    );
}

/// Number of dark (text or line) pixels in rows `y0..y1`.
pub fn dark_pixels(img: &RgbImage, y0: u32, y1: u32) -> usize {
    (y0..y1.min(img.height()))
        .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let p = img.get_pixel(x, y);
            (p[0] as u32 + p[1] as u32 + p[2] as u32) < 200
        })
        .count()
}
