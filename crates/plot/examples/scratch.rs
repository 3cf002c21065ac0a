use std::path::Path;
fn main() {
    let dir = Path::new(&std::env::args().nth(1).unwrap()).to_path_buf();
    let out = Path::new(&std::env::args().nth(2).unwrap()).to_path_buf();
    let inputs = plot::RunInputs::discover(&dir, &dir).unwrap();
    let t = std::time::Instant::now();
    let figs = match plot::draw_run(&inputs, &out, &plot::FigureOptions::default()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    for f in &figs {
        println!(
            "{}  —  {}",
            f.path.display(),
            &f.caption[..f.caption.len().min(100)]
        );
    }
    println!("{} figures in {:?}", figs.len(), t.elapsed());
    println!(
        "{}",
        plot::write_report(&inputs, &out, &figs).unwrap().display()
    );
}
