from canaryflow.artifacts import artifact_key, measurement_rows, summary_markdown

SUMMARY = {
    "service": "checkout", "version": "v3", "environment": "production", "previous_version": "v2",
    "status": "rolled_back", "reason": "high_error_rate",
    "explanation": "error_rate 3.33% > 0.10% over 34 requests at 10% canary", "duration_s": 12.34,
    "steps": [
        {"stage": "deploy", "weight": 0, "duration_s": 0.5, "outcome": "ok", "detail": "v3 started beside v2"},
        {"stage": "step 1/3", "weight": 10, "duration_s": 3.0, "outcome": "rollback", "detail": "a | b"},
    ],
    "measurements": [
        {"step": 0, "weight": 10, "elapsed_s": 1.0, "metric": "error_rate", "value": 0.0333333333,
         "threshold": 0.001, "unit": "ratio", "verdict": "FAIL", "requests": 34},
        {"step": 0, "weight": 10, "elapsed_s": 1.0, "metric": "p95_latency_seconds", "value": None,
         "threshold": 0.2, "unit": "s", "verdict": "INCONCLUSIVE", "requests": 3},
    ],
}


def test_rows_have_step_weight_metric_value_threshold_verdict():
    rows = measurement_rows(SUMMARY)
    assert rows[0] == {"step": 1, "weight": "10%", "elapsed_s": 1.0, "metric": "error_rate", "verdict": "FAIL",
                       "canary": "3.333%", "baseline": "no data", "limit": "0.100%", "evidence": "no data",
                       "canary_requests": 34, "detail": ""}
    assert rows[1]["canary"] == "no data"  # never shown as 0 or blank
    assert rows[1]["verdict"] == "INCONCLUSIVE"


def test_no_measurements_no_rows():
    assert measurement_rows({"measurements": []}) == []


def test_markdown_leads_with_the_decision_reason_and_numbers():
    text = summary_markdown(SUMMARY)
    assert text.startswith("# Rolled back: checkout v3 (production)")
    assert "**Reason:** `high_error_rate`" in text
    assert "3.33% > 0.10% over 34 requests" in text
    assert "| step 1/3 | 10% | 3.0 | rollback | a \\| b |" in text  # a pipe in a detail cannot break the table


def test_markdown_shows_a_scheduled_retry():
    text = summary_markdown({**SUMMARY, "reason": "metrics_unavailable", "retry": "attempt 2/3 scheduled at X"})
    assert "**Retry:** attempt 2/3 scheduled at X" in text


def test_promoted_headline():
    assert summary_markdown({**SUMMARY, "status": "promoted", "reason": "analysis_passed"}).startswith("# Promoted")


def test_artifact_keys_are_valid_prefect_keys():
    assert artifact_key("Check_out.v2", "analysis") == "release-check-out-v2-analysis"
