//! `paid costs`: spend per project and model, by day and month.

use std::process::ExitCode;

use paid_api::{ApiClient, ClientError, Costs, CostsQuery};

use super::Out;

/// Runs `paid costs`.
pub async fn costs(client: &ApiClient, project: Option<String>, out: Out) -> Result<ExitCode, ClientError> {
    Ok(out.success(&client.costs(&CostsQuery { project }).await?, print_costs))
}

fn print_costs(d: &Costs) {
    for (title, rows) in [("by month", &d.by_month), ("by day", &d.by_day)] {
        println!("{title}");
        println!("  {:<10} {:<28} {:<24} {:>10} {:>8} {:>10}", "PERIOD", "REPO", "MODEL", "USD", "CALLS", "TOKENS");
        for r in rows {
            println!(
                "  {:<10} {:<28} {:<24} {:>10.4} {:>8} {:>10}",
                r.period, r.repo, r.model, r.usd, r.requests, r.tokens
            );
        }
    }
    println!("total    ${:.4}", d.total.usd);
}
