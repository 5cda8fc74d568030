//! The decrypting routes (`POST /v1/verify`, `/v1/rotate`) under their limits: a client over its
//! rate gets 429 with Retry-After, an oversized body 413 before anything is parsed, and every
//! refusal is counted in `sigil_decrypt_calls_total`.

use std::time::Instant;

use sigil::server::decrypt_limit::{MAX_BODY_BYTES, PER_CLIENT_BURST, PER_CLIENT_PER_SECOND};

use crate::support::sealed::Bed;

/// A SealedSecret the cluster cannot open (its value is not age): verify answers 200 with
/// `opened: false` after decrypting was attempted, which is what the limit must bound.
const UNOPENABLE: &str = r#"{"apiVersion":"sigil.dev/v1alpha1","kind":"SealedSecret",
  "metadata":{"name":"db","namespace":"prod"},
  "spec":{"encryptedData":{"password":"-----BEGIN AGE ENCRYPTED FILE-----\nAAAA\n-----END AGE ENCRYPTED FILE-----\n"}}}"#;

async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Option<String>) {
    let answer = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("HTTP request");
    let retry = answer
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (answer.status().as_u16(), retry)
}

#[test]
fn a_client_over_its_rate_or_body_cap_is_refused_and_counted() {
    let bed = Bed::start(|_| {});
    bed.block_on(async {
        let http = reqwest::Client::new();
        let verify = format!("{}/v1/verify", bed.http_url());

        let started = Instant::now();
        let mut codes = Vec::new();
        for _ in 0..PER_CLIENT_BURST * 2 {
            codes.push(post(&http, &verify, UNOPENABLE.as_bytes().to_vec()).await);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let admitted = codes.iter().filter(|(code, _)| *code == 200).count();
        let limited: Vec<_> = codes.iter().filter(|(code, _)| *code == 429).collect();
        assert!(
            codes[..PER_CLIENT_BURST as usize]
                .iter()
                .all(|(code, _)| *code == 200),
            "the burst is admitted: {codes:?}"
        );
        // The bucket refills at the sustained rate while the loop runs.
        let allowed =
            f64::from(PER_CLIENT_BURST) + f64::from(PER_CLIENT_PER_SECOND) * elapsed + 1.0;
        assert!(
            (admitted as f64) <= allowed,
            "{admitted} calls admitted in {elapsed:.2}s, at most {allowed:.1} allowed"
        );
        assert!(
            !limited.is_empty(),
            "a client over its rate is refused: {codes:?}"
        );
        assert!(
            limited
                .iter()
                .all(|(_, retry)| retry.as_deref() == Some("1")),
            "429 says when to retry: {limited:?}"
        );
        assert_eq!(
            admitted + limited.len(),
            codes.len(),
            "only 200 or 429: {codes:?}"
        );

        // Rotate shares the client's bucket: still refused now.
        let rotate = format!("{}/v1/rotate", bed.http_url());
        assert_eq!(
            post(&http, &rotate, UNOPENABLE.as_bytes().to_vec()).await.0,
            429
        );

        // After a pause, an oversized body is refused before it is parsed.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let huge = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(post(&http, &rotate, huge).await.0, 413);

        let metrics = reqwest::get(format!("{}/metrics", bed.http_url()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        let count = |route: &str, outcome: &str| {
            let series =
                format!("sigil_decrypt_calls_total{{route=\"{route}\",outcome=\"{outcome}\"}} ");
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(&series))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0)
        };
        assert_eq!(count("verify", "admitted"), admitted, "{metrics}");
        assert_eq!(count("verify", "rate_limited"), limited.len(), "{metrics}");
        assert_eq!(count("rotate", "rate_limited"), 1, "{metrics}");
        assert_eq!(count("rotate", "too_large"), 1, "{metrics}");
    });
}
