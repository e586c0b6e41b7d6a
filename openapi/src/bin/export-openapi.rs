//! Writes `openapi/openapi.json` (3.1) and `openapi/openapi-3.0.json` (the 3.0 view).

fn main() -> anyhow::Result<()> {
    for (path, text) in [
        (
            gateway_openapi::checked_in_path(),
            gateway_openapi::render()?,
        ),
        (
            gateway_openapi::checked_in_30_path(),
            gateway_openapi::render_30()?,
        ),
    ] {
        std::fs::write(&path, text)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
