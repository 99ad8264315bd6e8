//! Fuzzes the structured-query decoder and planner: any bytes either fail with an error or give
//! a query the planner can plan and `explain` can describe, without panicking.
#![no_main]

use hearth::docs::index::CatalogSnapshot;
use hearth::docs::planner::plan;
use hearth::docs::query::Query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(query) = Query::from_json(&json, 10_000) {
        let planned = plan(&query, &CatalogSnapshot::default());
        let _ = hearth::docs::execute::explain(&query, &planned);
        let _ = query.effective_order();
    }
});
