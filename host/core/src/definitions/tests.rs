//! Tests of parsing and validation.

use super::*;
use crate::{ColumnSpec, Signature};

const FRAUD: &str = r#"
project: fraud
entities:   [{name: user, join_keys: [user_id]}]
sources:    [{name: user_stats, path: data/user_stats.parquet, timestamp_field: event_timestamp, created_timestamp_field: created}]
feature_views:
  - {name: user_stats, entities: [user], source: user_stats, ttl: 7d, online: true,
     features: [{name: txn_amount_avg_7d, dtype: float64}, {name: account_age_days, dtype: int64}]}
transforms:
  - {name: txn_risk, module: risk@1.0.0,
     inputs: [user_stats:txn_amount_avg_7d, user_stats:account_age_days, request:amount],
     request_schema: [{name: amount, dtype: float64}]}
feature_services: [{name: fraud_v1, features: ["user_stats:*", "txn_risk:*"]}]
"#;

fn risk_signature() -> Signature {
    Signature {
        inputs: vec![
            ColumnSpec::new("amount", DType::Float64),
            ColumnSpec::new("txn_amount_avg_7d", DType::Float64),
            ColumnSpec::new("account_age_days", DType::Int64),
        ],
        outputs: vec![
            ColumnSpec::new("z", DType::Float64),
            ColumnSpec::new("is_new", DType::Bool),
        ],
    }
}

fn catalog(module: &ModuleRef) -> Option<Signature> {
    (module.to_string() == "risk@1.0.0").then(risk_signature)
}

fn problems(yaml: &str) -> Vec<String> {
    match Definitions::from_yaml(yaml).and_then(|d| d.validate(&catalog)) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

fn assert_problem(yaml: &str, needle: &str) {
    let found = problems(yaml);
    assert!(
        found.iter().any(|p| p.contains(needle)),
        "expected a problem containing {needle:?}, got {found:#?}"
    );
}

#[test]
fn the_example_validates_and_expands() {
    let project = Definitions::from_yaml(FRAUD)
        .unwrap()
        .validate(&catalog)
        .unwrap();
    let names: Vec<String> = project.services["fraud_v1"]
        .iter()
        .map(ServedFeature::qualified)
        .collect();
    assert_eq!(
        names,
        [
            "user_stats:txn_amount_avg_7d",
            "user_stats:account_age_days",
            "txn_risk:z",
            "txn_risk:is_new"
        ]
    );
    let view = &project.definitions.feature_views[0];
    assert_eq!(view.ttl, "7d".parse().unwrap());
    assert_eq!(
        project.definitions.entities[0].join_keys[0].dtype,
        KeyType::Int64
    );
    // What is written reads back the same.
    let again = Definitions::from_yaml(&project.definitions.to_yaml().unwrap()).unwrap();
    assert_eq!(again, project.definitions);
}

#[test]
fn syntax_errors_and_unknown_keys_name_the_line() {
    let found =
        problems("project: fraud\nentities: [{name: user, join_keys: [user_id], colour: red}]\n");
    assert!(found[0].starts_with("line 2"), "{found:?}");
    assert!(found[0].contains("colour"), "{found:?}");
    let found = problems(&FRAUD.replace("online: true,", "online: true, colour: red,"));
    assert!(found[0].contains("colour"), "{found:?}");
    let found = problems("project: [\n");
    assert!(found[0].starts_with("line"), "{found:?}");
}

#[test]
fn unknown_references() {
    assert_problem(
        &FRAUD.replace("source: user_stats,", "source: nope,"),
        "unknown source `nope`",
    );
    assert_problem(
        &FRAUD.replace("entities: [user]", "entities: [usr]"),
        "unknown entity `usr`",
    );
    assert_problem(
        &FRAUD.replace("risk@1.0.0", "risk@2.0.0"),
        "module `risk@2.0.0` is not uploaded",
    );
    assert_problem(
        &FRAUD.replace("\"user_stats:*\"", "\"user_stat:*\""),
        "`user_stat` is neither",
    );
    assert_problem(
        &FRAUD.replace("\"txn_risk:*\"", "\"txn_risk:zz\""),
        "no output `zz`",
    );
    assert_problem(
        &FRAUD.replace("request:amount]", "request:amount, user_stats:nope]"),
        "declares no input `nope`",
    );
    assert_problem(
        &FRAUD.replace(
            "request_schema: [{name: amount, dtype: float64}]",
            "request_schema: []",
        ),
        "request field `amount` is not in request_schema",
    );
    assert_problem(
        &FRAUD.replace(", request:amount]", "]"),
        "needs input `amount`",
    );
}

#[test]
fn type_mismatches_and_duplicates() {
    assert_problem(
        &FRAUD.replace(
            "{name: account_age_days, dtype: int64}",
            "{name: account_age_days, dtype: float64}",
        ),
        "is float64, but module risk@1.0.0 declares input `account_age_days` as int64",
    );
    assert_problem(
        &FRAUD.replace(
            "feature_services: [",
            "feature_services: [{name: fraud_v1, features: [\"user_stats:*\"]}, ",
        ),
        "duplicate name `fraud_v1`",
    );
    assert_problem(
        &FRAUD.replace(
            "features: [\"user_stats:*\", \"txn_risk:*\"]",
            "features: [\"user_stats:*\", \"user_stats:account_age_days\"]",
        ),
        "listed twice",
    );
    assert_problem(&FRAUD.replace("ttl: 7d", "ttl: 7 days"), "invalid duration");
    assert_problem(
        &FRAUD.replace("name: txn_amount_avg_7d", "name: user_id"),
        "join key",
    );
}

#[test]
fn inputs_can_be_renamed_and_read_the_request_time() {
    let renamed = FRAUD
        .replace(
            "inputs: [user_stats:txn_amount_avg_7d,",
            "inputs: [{from: \"user_stats:txn_amount_avg_7d\", as: avg}, request:request_time,",
        )
        .replace("risk@1.0.0", "renamed@1");
    let modules = |m: &ModuleRef| {
        (m.name == "renamed").then(|| {
            let mut s = risk_signature();
            s.inputs[1].name = "avg".into();
            s.inputs
                .push(ColumnSpec::new("request_time", DType::Timestamp));
            s
        })
    };
    let project = Definitions::from_yaml(&renamed)
        .unwrap()
        .validate(&modules)
        .unwrap();
    let inputs = &project.definitions.transforms[0].inputs;
    assert_eq!(inputs[0].input_name(), "avg");
    assert_eq!(inputs[0].to_string(), "user_stats:txn_amount_avg_7d as avg");
    let again = Definitions::from_yaml(&project.definitions.to_yaml().unwrap()).unwrap();
    assert_eq!(again, project.definitions, "aliases survive a round trip");
    // Without the alias the module's input is not fed.
    let error = Definitions::from_yaml(&renamed.replace(", as: avg}", ", as: mean}"))
        .unwrap()
        .validate(&modules)
        .unwrap_err();
    assert!(
        error.to_string().contains("declares no input `mean`"),
        "{error}"
    );
}

/// The problems `validate_yaml` finds in `yaml`, as (line, message) pairs.
fn located(yaml: &str) -> Vec<(Option<usize>, String)> {
    match Definitions::validate_yaml(yaml, &catalog) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems
            .into_iter()
            .map(|p| (p.line, p.to_string()))
            .collect(),
    }
}

#[test]
fn problems_name_their_line() {
    // Flow style: several problems, each on the line of what is wrong.
    let yaml = FRAUD
        .replace("source: user_stats,", "source: nope,")
        .replace("risk@1.0.0", "risk@2.0.0")
        .replace("\"user_stats:*\"", "\"user_stat:*\"");
    let found = located(&yaml);
    let line_of = |needle: &str| {
        found
            .iter()
            .find(|(_, text)| text.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {found:#?}"))
            .0
    };
    assert_eq!(line_of("unknown source `nope`"), Some(6));
    assert_eq!(line_of("module `risk@2.0.0` is not uploaded"), Some(9));
    assert_eq!(line_of("`user_stat` is neither"), Some(12));
    assert!(
        found[0]
            .1
            .starts_with("line 6, feature_views[0] \"user_stats\" .source: "),
        "{found:#?}"
    );

    // Block style: a nested feature and an input, each on its own line.
    let block = "project: fraud
entities:
  - name: user
    join_keys: [user_id]
sources:
  - name: user_stats
feature_views:
  - name: user_stats
    entities: [user]
    source: user_stats
    features:
      - name: txn_amount_avg_7d
        dtype: float64
      - name: account_age_days
        dtype: float64
transforms:
  - name: txn_risk
    module: risk@1.0.0
    inputs:
      - user_stats:txn_amount_avg_7d
      - user_stats:account_age_days
      - request:amount
      - request:colour
    request_schema: [{name: amount, dtype: float64}]
";
    let found = located(block);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(found[0].0, Some(21), "{found:#?}");
    assert!(found[0].1.contains("as int64"), "{found:#?}");
    assert_eq!(found[1].0, Some(23), "{found:#?}");
    assert!(found[1].1.contains("`colour`"), "{found:#?}");

    // Syntax errors keep the parser's line and column.
    let found = located("project: fraud\nentities: [{name: user, colour: red}]\n");
    assert_eq!(found[0].0, Some(2));
    assert!(found[0].1.starts_with("line 2, column"), "{found:#?}");
}

#[test]
fn cycles_are_named() {
    let signature = |input: &str, output: &str| Signature {
        inputs: vec![ColumnSpec::new(input, DType::Float64)],
        outputs: vec![ColumnSpec::new(output, DType::Float64)],
    };
    let modules = move |m: &ModuleRef| match m.name.as_str() {
        "a" => Some(signature("y", "x")),
        "b" => Some(signature("x", "y")),
        _ => None,
    };
    let yaml = r#"
project: p
transforms:
  - {name: ta, module: a@1, inputs: [tb:y]}
  - {name: tb, module: b@1, inputs: [ta:x]}
"#;
    let error = Definitions::from_yaml(yaml)
        .unwrap()
        .validate(&modules)
        .unwrap_err();
    assert!(
        error.to_string().contains("cycle: ta -> tb -> ta"),
        "{error}"
    );
    let chained = r#"
project: p
transforms:
  - {name: tb, module: b@1, inputs: [ta:x]}
  - {name: ta, module: a@1, inputs: [request:y], request_schema: [{name: y, dtype: float64}]}
"#;
    let project = Definitions::from_yaml(chained)
        .unwrap()
        .validate(&modules)
        .unwrap();
    assert_eq!(
        project.transform_order,
        [TransformId(1), TransformId(0)],
        "ta runs before tb, which reads it"
    );
    // tb's input resolved to ta's output, by index, once.
    assert_eq!(
        project.inputs(TransformId(0)),
        [ResolvedInput::Transform {
            transform: TransformId(1),
            output: 0
        }]
    );
}

const AGGREGATED: &str = r#"
project: fraud
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: transactions, path: data/transactions/, timestamp_field: event_timestamp,
     created_timestamp_field: ingested_at, push: true, allowed_lateness: 1h,
     columns: [{name: amount, dtype: float64}, {name: merchant, dtype: string}]}
feature_views:
  - name: user_txn
    entities: [user]
    source: transactions
    hop: 5m
    aggregations:
      - {name: txn_count_1h,     function: count,  window: 1h}
      - {name: amount_sum_24h,   function: sum,    column: amount, window: 24h}
      - {name: amount_mean_7d,   function: mean,   column: amount, window: 7d}
      - {name: amount_max_7d,    function: max,    column: amount, window: 7d}
      - {name: amount_stddev_7d, function: stddev, column: amount, window: 7d}
      - {name: last_merchant,    function: last,   column: merchant, window: 30d}
      - {name: merchants_30d,    function: approx_count_distinct, column: merchant, window: 30d}
"#;

#[test]
fn aggregated_views_parse_and_validate_online() {
    let d = Definitions::from_yaml(AGGREGATED).unwrap();
    let view = &d.feature_views[0];
    assert_eq!(view.hop.unwrap().micros(), 300_000_000);
    assert_eq!(view.aggregations.len(), 7);
    assert_eq!(view.aggregations[2].window.micros(), 7 * 86_400_000_000);
    let source = &d.sources[0];
    assert!(source.push);
    assert_eq!(source.allowed_lateness.unwrap().micros(), 3_600_000_000);
    let found = problems(AGGREGATED);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn an_online_aggregated_view_needs_lateness_arrivals_and_a_log_directory() {
    for (from, to, needle) in [
        (" allowed_lateness: 1h,", "", "declare `allowed_lateness`"),
        (
            " created_timestamp_field: ingested_at,",
            "",
            "declare `created_timestamp_field`",
        ),
        (
            "path: data/transactions/,",
            "path: data/transactions.parquet,",
            "have a directory `path`, not a file",
        ),
    ] {
        let yaml = AGGREGATED.replace(from, to);
        assert_ne!(yaml, AGGREGATED, "{from}");
        let found = problems(&yaml);
        assert!(
            found.len() == 1 && found[0].contains(needle) && found[0].contains("online: false"),
            "{from}: {found:#?}"
        );
    }
    // Offline only, none of it is needed.
    let offline = AGGREGATED.replace(" allowed_lateness: 1h,", "").replace(
        "    source: transactions\n",
        "    source: transactions\n    online: false\n",
    );
    assert!(problems(&offline).is_empty(), "{:#?}", problems(&offline));
    // A row view beside it on the same event source would never see a push.
    let both = format!(
        "{AGGREGATED}  - {{name: user_last, entities: [user], source: transactions, features: [{{name: amount, dtype: float64}}]}}\n"
    );
    let found = problems(&both);
    assert!(
        found.len() == 1 && found[0].contains("is an event source"),
        "{found:#?}"
    );
}

#[test]
fn an_offline_aggregated_view_validates_with_typed_features_a_service_can_list() {
    let yaml = format!(
        "{}feature_services: [{{name: txn, features: [\"user_txn:*\"]}}]\n",
        AGGREGATED.replace(
            "    source: transactions\n",
            "    source: transactions\n    online: false\n"
        )
    );
    let project = Definitions::from_yaml(&yaml)
        .unwrap()
        .validate(&catalog)
        .unwrap();
    let view = &project.definitions().feature_views[0];
    assert!(view.is_aggregated() && view.features.is_empty());
    let typed: Vec<(&str, DType)> = view
        .feature_list()
        .iter()
        .map(|f| (f.name.as_str(), f.dtype))
        .collect();
    assert_eq!(
        typed,
        [
            ("txn_count_1h", DType::Int64),
            ("amount_sum_24h", DType::Float64),
            ("amount_mean_7d", DType::Float64),
            ("amount_max_7d", DType::Float64),
            ("amount_stddev_7d", DType::Float64),
            ("last_merchant", DType::String),
            ("merchants_30d", DType::Int64),
        ]
    );
    let served: Vec<&str> = project.services()["txn"]
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(served.len(), 7);
    assert_eq!(served[5], "last_merchant");
    // Re-serialized definitions parse again: the derived features are not written out.
    let again = project.definitions().to_yaml().unwrap();
    assert!(!again.contains("aggregate_features"), "{again}");
    Definitions::from_yaml(&again)
        .unwrap()
        .validate(&catalog)
        .unwrap();
}

#[test]
fn aggregation_mistakes_are_named() {
    for (from, to, needle) in [
        (
            "allowed_lateness: 1h,",
            "allowed_lateness: 1h, retention: 7d,",
            "a 1w window with a 5m hop reads up to 1w5m back, beyond the source's retention of 1w",
        ),
        (
            "function: mean,",
            "function: medain,",
            "unknown function `medain`; known: count, sum, mean",
        ),
        (
            "function: max,    column: amount",
            "function: max,    column: merchant",
            "`max` does not take a string column (`merchant`); it takes int64, float64",
        ),
        (
            "column: amount, window: 24h",
            "column: amout, window: 24h",
            "source `transactions` declares no column `amout`",
        ),
        (
            "function: sum,    column: amount, window: 24h",
            "function: sum, window: 24h",
            "`sum` needs a `column` of the source",
        ),
        (
            "window: 1h}",
            "window: 62m}",
            "the hop 5m does not divide the window 1h2m",
        ),
        (
            "hop: 5m",
            "hop: 1s",
            "holds 2592000 tiles per key, over the limit of 10000; use a hop of at least 4m20s",
        ),
        ("    hop: 5m\n", "", "an aggregated view needs a `hop`"),
        ("window: 1h}", "window: 0}", "the window must be positive"),
        (
            "{name: txn_count_1h,",
            "{name: amount_sum_24h,",
            "duplicate feature `amount_sum_24h`",
        ),
        (
            "{name: txn_count_1h,",
            "{name: user_id,",
            "has the name of a join key",
        ),
        (
            "    hop: 5m\n",
            "    hop: 5m\n    features: [{name: x, dtype: int64}]\n",
            "either `features` (stored columns) or `aggregations`",
        ),
    ] {
        let yaml = AGGREGATED.replacen(from, to, 1);
        assert_ne!(yaml, AGGREGATED, "{from:?} is in the example");
        assert_problem(&yaml, needle);
    }
    assert_problem(
        &FRAUD.replace("ttl: 7d,", "ttl: 7d, hop: 5m,"),
        "`hop` is for views with `aggregations`",
    );
    assert!(
        "allowed_lateness: soon".parse::<Interval>().is_err()
            && "0".parse::<Interval>().unwrap().micros() == 0
    );
}
