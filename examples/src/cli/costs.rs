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
    if !d.budgets.is_empty() {
        println!("budgets");
        println!("  {:<10} {:<28} {:>10} {:>10} {:>10}", "PERIOD", "REPO", "CAP USD", "SPENT", "HELD");
        let usd = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        for b in &d.budgets {
            println!(
                "  {:<10} {:<28} {:>10} {:>10.4} {:>10}",
                b.period,
                b.repo,
                usd(b.limit_usd),
                b.spent_usd,
                usd(b.reserved_usd)
            );
        }
    }
}
