//! Writes the OpenAPI document to `openapi/openapi.json` (or to the path given).

fn main() -> anyhow::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .map_or_else(gateway_openapi::checked_in_path, std::path::PathBuf::from);
    std::fs::write(&path, gateway_openapi::render()?)?;
    println!("wrote {}", path.display());
    Ok(())
}
