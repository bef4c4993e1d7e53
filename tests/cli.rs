//! The `spahgc` command line end to end, on the shared her2st data with the default encoder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn spahgc(args: &[&str], cache: &Path) -> Output {
    spahgc_with(args, cache, &[])
}

fn spahgc_with(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spahgc"))
        .args(args)
        .env("SPAHGC_CACHE_DIR", cache)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("the spahgc binary runs")
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "spahgc failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("--json prints one JSON object")
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "spahgc should have failed: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The her2st data and the installed default encoder, or `None` (the test is skipped).
fn her2st() -> Option<PathBuf> {
    let dir = spahgc_testdata::shared("her2st")?;
    spahgc_testdata::default_encoder()?;
    Some(dir)
}

#[test]
fn a_second_embedding_comes_from_the_cache_unchanged() {
    let Some(data) = her2st() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (first, second) = (tmp.path().join("a.npy"), tmp.path().join("b.npy"));
    let data = data.to_str().unwrap();
    let run = |out: &Path| {
        ok(&spahgc(&["embed", "--her2st", data, "--section", "C3", "--json", "--out", out.to_str().unwrap()], &cache))
    };
    let cold = run(&first);
    assert_eq!(
        (cold["spots"].as_u64(), cold["dim"].as_u64(), cold["source"].as_str()),
        (Some(180), Some(1280), Some("computed"))
    );
    let warm = run(&second);
    assert_eq!(warm["source"], "cache");
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap(),
        "cached embeddings equal computed ones"
    );
    assert_eq!(std::fs::metadata(&first).unwrap().len(), 128 + 180 * 1280 * 4);

    let stats = ok(&spahgc(&["cache", "stats", "--json"], &cache));
    let entries = stats["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["shape"], "180 × 1280 F32");
    assert_eq!(ok(&spahgc(&["cache", "clear", "--json"], &cache))["removed"], 1);
}

#[test]
fn the_committed_panel_is_reproduced_by_the_panel_command() {
    let Some(data) = spahgc_testdata::shared("her2st") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("panel.txt");
    let args = [
        "panel",
        "--her2st",
        data.to_str().unwrap(),
        "--sections",
        "B4,C2,C3,C4,C5",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ];
    assert_eq!(ok(&spahgc(&args, tmp.path()))["genes"], 250);
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../panels/her2st-250.txt");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), std::fs::read_to_string(committed).unwrap());
}

#[test]
fn a_bank_holds_the_spots_of_its_sections() {
    let Some(data) = her2st() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let bank = tmp.path().join("bank.spb");
    let panel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../panels/her2st-250.txt");
    let args = ["bank", "build", "--her2st", data.to_str().unwrap(), "--sections", "C2,C4", "--json"];
    let built = ok(&spahgc(
        &[&args[..], &["--panel", panel.to_str().unwrap(), "--out", bank.to_str().unwrap()]].concat(),
        &tmp.path().join("cache"),
    ));
    assert_eq!(built["spots"], 187 + 184);
    let info = ok(&spahgc(&["bank", "info", bank.to_str().unwrap(), "--json"], tmp.path()));
    assert_eq!((info["genes"].as_u64(), info["dim"].as_u64()), (Some(250), Some(1280)));
    assert_eq!(info["sections"], serde_json::json!(["C2", "C4"]));

    // A bank of another section joins the first as a shard once it is normalised as the first.
    let bank_c3 = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let args = ["bank", "build", "--her2st", data.to_str().unwrap(), "--sections", "C3", "--json"];
        let built = spahgc(&[&args[..], extra, &["--out", out.to_str().unwrap()]].concat(), &tmp.path().join("cache"));
        (out, built)
    };
    let (fitted, built) = bank_c3("c3-fitted.spb", &["--panel", panel.to_str().unwrap()]);
    ok(&built);
    let (alike, built) = bank_c3("c3-alike.spb", &["--normalised-as", bank.to_str().unwrap(), "--precision", "f16"]);
    ok(&built);
    let list = tmp.path().join("joined.banks");
    let join = |shards: &[&Path]| {
        let paths: Vec<&str> = shards.iter().map(|p| p.to_str().unwrap()).collect();
        spahgc(&[&["bank", "join", "--json", "--out", list.to_str().unwrap()], &paths[..]].concat(), tmp.path())
    };
    let refusal = join(&[&bank, &fitted]);
    assert_eq!(refusal.status.code(), Some(2), "incompatible banks are bad input");
    let refused = failed(&refusal);
    assert!(refused.contains("c3-fitted.spb") && refused.contains("min-max statistics differ"), "{refused}");
    assert!(!list.exists(), "a refused join writes nothing");
    assert_eq!(ok(&join(&[&bank, &alike]))["spots"], 187 + 184 + 180);
    let info = ok(&spahgc(&["bank", "info", list.to_str().unwrap(), "--json"], tmp.path()));
    assert_eq!(info["sections"], serde_json::json!(["C2", "C4", "C3"]));
    assert_eq!(info["spots"], 187 + 184 + 180);
    let precisions: Vec<&serde_json::Value> =
        info["files"].as_array().unwrap().iter().map(|f| &f["precision"]).collect();
    assert_eq!(precisions, ["f32", "f16"], "{info}");
}

#[test]
fn bad_input_is_named_and_changes_nothing() {
    let Some(data) = her2st() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("e.npy");
    let data_str = data.to_str().unwrap();

    let err =
        failed(&spahgc(&["embed", "--her2st", data_str, "--section", "Z9", "--out", out.to_str().unwrap()], &cache));
    assert!(err.contains("Z9") && err.contains("B4, C2, C3, C4, C5"), "{err}");

    // A copy of C3 whose image is cut short.
    let broken = tmp.path().join("her2st");
    for sub in ["ST-cnts", "ST-imgs", "ST-spotfiles"] {
        std::fs::create_dir_all(broken.join(sub)).unwrap();
    }
    std::fs::copy(data.join("ST-cnts/C3.tsv.gz"), broken.join("ST-cnts/C3.tsv.gz")).unwrap();
    std::fs::copy(data.join("ST-spotfiles/C3_selection.tsv"), broken.join("ST-spotfiles/C3_selection.tsv")).unwrap();
    let jpeg = std::fs::read(data.join("ST-imgs/C3.jpg")).unwrap();
    std::fs::write(broken.join("ST-imgs/C3.jpg"), &jpeg[..jpeg.len() - 4096]).unwrap();
    let err = failed(&spahgc(
        &["embed", "--her2st", broken.to_str().unwrap(), "--section", "C3", "--out", out.to_str().unwrap()],
        &cache,
    ));
    assert!(err.contains("C3.jpg") && err.contains("truncated"), "{err}");
    assert_eq!(ok(&spahgc(&["cache", "stats", "--json"], &cache))["entries"], serde_json::json!([]));

    // A cache directory that cannot exist: its parent is a file.
    let blocker = tmp.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let bad_cache = blocker.join("cache");
    let err = failed(&spahgc(
        &["embed", "--her2st", data_str, "--section", "C3", "--out", out.to_str().unwrap()],
        &bad_cache,
    ));
    assert!(err.contains(bad_cache.to_str().unwrap()), "{err}");
    assert!(!out.exists(), "no output after an error");

    // An ONNX Runtime library that is not there: the message says how to fix it.
    let no_lib = [("SPAHGC_ORT_LIB", "/nonexistent/libonnxruntime.so")];
    let err = failed(&spahgc_with(&["embed", "--her2st", data_str, "--section", "C3", "--no-cache"], &cache, &no_lib));
    assert!(err.contains("SPAHGC_ORT_LIB") && err.contains("/nonexistent/libonnxruntime.so"), "{err}");
}

#[test]
fn batch_predictions_split_into_shards_skip_finished_work_and_exit_by_cause() {
    let (Some(data), Some(bundle)) = (her2st(), spahgc_testbundle::small()) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let image = data.join("ST-imgs/C3.jpg");
    let base = ["predict", "--bundle", bundle.to_str().unwrap(), "--slide", image.to_str().unwrap(), "--mpp", "0.69"];
    let predict = |extra: &[&str]| spahgc(&[&base[..], extra, &["--json", "--quiet"]].concat(), &cache);
    let plan = ok(&predict(&["--plan"]));
    assert!(plan["blocks"].as_u64().unwrap() >= 3, "{plan}");

    let whole = tmp.path().join("whole");
    let summary = ok(&predict(&["--out", whole.to_str().unwrap()]));
    assert_eq!(
        (&summary["status"], &summary["skipped"], &summary["spots"]),
        (&"ok".into(), &false.into(), &plan["spots"])
    );
    let rows = |dir: &Path| -> Vec<String> {
        std::fs::read_to_string(dir.join("expression.csv")).unwrap().lines().skip(1).map(String::from).collect()
    };
    let written = std::fs::metadata(whole.join("expression.csv")).unwrap().modified().unwrap();
    // The same request again finds its outputs and leaves them; --force predicts again.
    let again = ok(&predict(&["--out", whole.to_str().unwrap(), "--threads", "1"]));
    assert_eq!(again["skipped"], true);
    assert_eq!(std::fs::metadata(whole.join("expression.csv")).unwrap().modified().unwrap(), written);
    assert_eq!(ok(&predict(&["--out", whole.to_str().unwrap(), "--force"]))["skipped"], false);

    // Three shards, rows concatenated in order, are the whole prediction.
    let mut joined = Vec::new();
    for i in 0..3 {
        let dir = tmp.path().join(format!("shard-{i}"));
        let shard = ok(&predict(&["--out", dir.to_str().unwrap(), "--shard", &format!("{i}/3"), "--threads", "1"]));
        assert_eq!(shard["shard"], format!("{i}/3"));
        joined.extend(rows(&dir));
    }
    assert_eq!(joined, rows(&whole));

    // Each cause of failure has its exit code and a one-line JSON summary on stdout.
    let corrupt = tmp.path().join("corrupt.svs");
    std::fs::write(&corrupt, b"II*\0 not really a TIFF").unwrap();
    let out = tmp.path().join("failed");
    let attempt = |slide: &Path, extra: &[&str]| {
        let args = ["predict", "--bundle", bundle.to_str().unwrap(), "--slide", slide.to_str().unwrap()];
        spahgc(&[&args[..], &["--out", out.to_str().unwrap(), "--json"], extra].concat(), &cache)
    };
    let cases: [(&Path, &[&str], i32, &str); 6] = [
        (&tmp.path().join("missing.svs"), &[], 3, "missing.svs"),
        (&corrupt, &[], 3, "corrupt.svs"),
        (&image, &["--mpp", "0.69", "--shard", "0/0"], 2, "at least 1"),
        (&image, &["--mpp", "0.69", "--shard", "5/3"], 2, "must be below 3"),
        (&image, &["--mpp", "0.69", "--region", "0,0,1e6,10"], 2, "outside slide"),
        (&image, &["--mpp", "0.69", "--threads", "0"], 2, "--threads must be at least 1"),
    ];
    for (slide, extra, code, named) in cases {
        let output = attempt(slide, extra);
        assert_eq!(output.status.code(), Some(code), "{extra:?}: {}", String::from_utf8_lossy(&output.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!((&summary["status"], &summary["exit_code"]), (&"error".into(), &code.into()));
        assert!(summary["error"].as_str().unwrap().contains(named), "{summary}");
    }
    assert!(!out.exists(), "a failed run writes nothing");
}

#[test]
fn the_component_writes_what_predict_writes_for_the_same_region() {
    let (Some(bundle), Some(component)) =
        (spahgc_testbundle::small(), spahgc_testdata::component("spahgc-predictor-host-encoder.wasm"))
    else {
        return;
    };
    let Some(wsi) = spahgc_testdata::shared("wsi") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let slide = wsi.join("cmu_small_region.svs");
    let (native, sandboxed) = (tmp.path().join("native"), tmp.path().join("wasm"));
    let common =
        ["--bundle", bundle.to_str().unwrap(), "--slide", slide.to_str().unwrap(), "--region", "700,700,900,900"];
    let genes = ["--genes", "ERBB2,CD74", "--json", "--quiet", "--device", "cpu"];
    let expected =
        ok(&spahgc(&[&["predict"][..], &common, &genes, &["--out", native.to_str().unwrap()]].concat(), &cache));
    let wasm = ["wasm", "predict", "--host-encoder", "--component", component.to_str().unwrap()];
    let found = ok(&spahgc(&[&wasm[..], &common, &genes, &["--out", sandboxed.to_str().unwrap()]].concat(), &cache));
    assert_eq!(
        (&found["spots"], &found["in_tissue"], &found["genes"]),
        (&expected["spots"], &expected["in_tissue"], &expected["genes"])
    );
    check_outputs(&sandboxed, &found, found["spots"].as_u64().unwrap() as usize, 2);
    let table = |dir: &Path| -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(dir.join("expression.csv")).unwrap();
        text.lines().map(|l| l.split(',').map(String::from).collect()).collect()
    };
    let (a, b) = (table(&native), table(&sandboxed));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x[..4], y[..4], "spot, centre and tissue flag");
        for (u, v) in x[4..].iter().zip(&y[4..]) {
            let (u, v): (f32, f32) = (u.parse().unwrap_or(f32::NAN), v.parse().unwrap_or(f32::NAN));
            assert!((u - v).abs() <= 1e-3 || (u.is_nan() && v.is_nan()), "{x:?} vs {y:?}");
        }
    }
    // A limit the component cannot work within is an internal failure, named.
    let out = tmp.path().join("starved");
    let starved = spahgc(
        &[&wasm[..], &common, &["--out", out.to_str().unwrap(), "--json", "--memory-mib", "8"]].concat(),
        &cache,
    );
    assert_eq!(starved.status.code(), Some(1), "{}", String::from_utf8_lossy(&starved.stderr));
    assert!(
        String::from_utf8_lossy(&starved.stdout).contains("memory"),
        "{}",
        String::from_utf8_lossy(&starved.stdout)
    );
    assert!(!out.exists());
}

#[test]
fn evaluation_reports_every_method_and_is_deterministic() {
    let Some(data) = her2st() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let panel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../panels/her2st-250.txt");
    let report = |name: &str| {
        let path = tmp.path().join(name);
        let args = ["eval", "--her2st", data.to_str().unwrap(), "--sections", "C2,C3,C4", "--test", "C3"];
        // A short run of a small network: the full protocol is the documented `spahgc eval`.
        let small = ["--epochs", "5", "--hidden", "64", "--layers", "2"];
        let out = spahgc(
            &[&args[..], &small[..], &["--panel", panel.to_str().unwrap(), "--json", path.to_str().unwrap()]].concat(),
            &cache,
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&path).unwrap();
        (
            text.clone(),
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (first, json, table) = report("a.json");
    assert!(table.contains("pcc_hvg50") && table.contains("ridge"), "the table is printed too: {table}");
    let folds = json["folds"].as_array().unwrap();
    assert_eq!(folds.len(), 1);
    assert_eq!(folds[0]["test"], "C3");
    let methods = &folds[0]["methods"];
    for method in ["mean", "knn", "ridge", "mlp", "spahgc"] {
        let pcc = methods[method]["pcc"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&pcc), "{method}: {pcc}");
        assert!(methods[method]["rmse"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(methods["mean"]["pcc"], 0.0, "a constant prediction carries no correlation");
    assert!(methods["knn"]["pcc"].as_f64().unwrap() > 0.05, "retrieval from consecutive sections must beat chance");
    assert_eq!(json["mean"], folds[0]["methods"], "with one fold, the mean is that fold");
    assert_eq!(report("b.json").0, first, "the same inputs give the same report");

    let bad = spahgc(&["eval", "--her2st", data.to_str().unwrap(), "--sections", "C2,C4", "--test", "C3"], &cache);
    assert!(failed(&bad).contains("--test C3 is not one of --sections C2,C4"));
}

#[test]
fn training_writes_a_verified_bundle() {
    let Some(data) = her2st() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let bundle = tmp.path().join("bundle");
    let panel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../panels/her2st-250.txt");
    let small = ["--epochs", "2", "--hidden", "32", "--layers", "1", "--panel", panel.to_str().unwrap()];
    let train = |sections: &str| {
        let args = ["train", "--her2st", data.to_str().unwrap(), "--sections", sections, "--json"];
        spahgc(&[&args[..], &small[..], &["--out", bundle.to_str().unwrap()]].concat(), &cache)
    };
    let summary = ok(&train("C2,C4"));
    assert_eq!((summary["epochs"].as_u64(), summary["genes"].as_u64()), (Some(2), Some(250)));
    let pitch = summary["spot_pitch_um"].as_f64().unwrap();
    assert!((180.0..210.0).contains(&pitch), "ST array spots lie about 200 µm apart, got {pitch}");

    let info = ok(&spahgc(&["bundle", "info", bundle.to_str().unwrap(), "--json"], &cache));
    assert_eq!(info["training_sections"], serde_json::json!(["C2", "C4"]));
    assert_eq!(info["bank_spots"], 187 + 184);
    let files: Vec<&String> = info["files"].as_object().unwrap().keys().collect();
    for file in
        ["bank.spb", "encoder/manifest.json", "encoder/model.onnx", "model/config.json", "model/weights.safetensors"]
    {
        assert!(files.iter().any(|f| *f == file), "{file} in {files:?}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("model/config.json")).unwrap()).unwrap();
    assert_eq!(config["architecture"]["hidden"], 32);
    assert_eq!(config["normalisation"]["min"].as_array().unwrap().len(), 250, "the statistics travel with the model");

    // Training again replaces the bundle whole; too few sections changes nothing.
    ok(&train("C2,C3"));
    let info = ok(&spahgc(&["bundle", "info", bundle.to_str().unwrap(), "--json"], &cache));
    assert_eq!(info["training_sections"], serde_json::json!(["C2", "C3"]));
    assert!(failed(&train("C2")).contains("at least two sections"));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2, "only the cache and the bundle: no leftovers");

    // Predictions for a section outside the bank, and for a slide region on the bundle's grid.
    let out = tmp.path().join("predicted");
    let predict = |args: &[&str]| {
        let base = ["predict", "--bundle", bundle.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"];
        spahgc(&[&base[..], args].concat(), &cache)
    };
    let summary = ok(&predict(&["--her2st", data.to_str().unwrap(), "--section", "C4"]));
    assert_eq!((summary["spots"].as_u64(), summary["genes"].as_u64()), (Some(184), Some(250)));
    let csv = std::fs::read_to_string(out.join("expression.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 184);
    assert!(lines[0].starts_with("spot,x,y,in_tissue,") && lines[0].split(',').count() == 4 + 250);
    assert!(lines[1..].iter().all(|l| l.split(',').skip(4).all(|v| v.parse::<f32>().is_ok_and(f32::is_finite))));
    check_outputs(&out, &summary, 184, 250);
    ok(&predict(&["--her2st", data.to_str().unwrap(), "--section", "C4"]));
    assert_eq!(std::fs::read_to_string(out.join("expression.csv")).unwrap(), csv, "a second run predicts the same");
    // The bundle's bank given with --bank is another request (predicted again), with the same result.
    let own_bank = bundle.join("bank.spb");
    let again =
        ok(&predict(&["--her2st", data.to_str().unwrap(), "--section", "C4", "--bank", own_bank.to_str().unwrap()]));
    assert_ne!(again["skipped"], true, "{again}");
    assert_eq!(std::fs::read_to_string(out.join("expression.csv")).unwrap(), csv);

    // A 3000 x 3000 px region of a section's image, on the bundle's grid.
    let region =
        ok(&predict(&["--her2st", data.to_str().unwrap(), "--section", "C3", "--region", "3000,3000,3000,3000"]));
    let spots = region["spots"].as_u64().unwrap() as usize;
    assert!((50..=121).contains(&spots), "about 11 x 11 grid spots, those on tissue: {spots}");
    check_outputs(&out, &region, spots, 250);

    let wsi = spahgc_testdata::shared("wsi").unwrap().join("cmu_small_region.svs");
    let region = ok(&predict(&["--slide", wsi.to_str().unwrap(), "--region", "0,0,1000,800", "--keep-background"]));
    // 0.499 µm/px and a ~188 µm pitch: a spot every ~377 px, centres at 188, 565, 942 px.
    assert_eq!(region["spots"], 3 * 2, "{region}");
    let err = failed(&predict(&["--slide", wsi.to_str().unwrap(), "--region", "0,0,100000,10"]));
    assert!(err.contains("outside"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("expression.csv")).unwrap().lines().count(),
        1 + 6,
        "a failed run leaves the last outputs"
    );
    // A subset of genes, in the order asked; a gene the bundle lacks is named.
    let subset = ["--region", "400,400,1000,800", "--keep-background", "--genes", "ERBB2,CD74"];
    let summary = ok(&predict(&[&["--slide", wsi.to_str().unwrap()][..], &subset[..]].concat()));
    let csv = std::fs::read_to_string(out.join("expression.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("spot,x,y,in_tissue,ERBB2,CD74"));
    assert_eq!(csv.lines().count(), 1 + 3 * 2, "margin spots join the graph but are not written");
    check_outputs(&out, &summary, 6, 2);
    assert!(out.join("heatmap-ERBB2.png").is_file() && out.join("heatmap-CD74.png").is_file());
    // The whole slide; the tissue mask skips spots on glass: a third of the slide's grid is tissue.
    let summary = ok(&predict(&["--slide", wsi.to_str().unwrap()]));
    let tissue = summary["spots"].as_u64().unwrap();
    check_outputs(&out, &summary, tissue as usize, 250);
    let all = ok(&predict(&["--slide", wsi.to_str().unwrap(), "--keep-background"]))["spots"].as_u64().unwrap();
    assert!(all == 6 * 8 && (10..all / 2).contains(&tissue), "{tissue} of {all} grid spots on tissue");
    let err = failed(&predict(&["--slide", wsi.to_str().unwrap(), "--genes", "ERBB2,NOPE"]));
    assert!(err.contains("gene NOPE is not among the 250 genes"), "{err}");
    let err = failed(&predict(&["--slide", wsi.to_str().unwrap(), "--max-spots", "20"]));
    assert!(err.contains("48 grid cells") && err.contains("more than the 20"), "{err}");
    let names: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "no staging directory is left: {names:?}");

    // The viewport benchmark runs, cold then warm, on the bundle.
    let bench = ["bench", "viewport", "--bundle", bundle.to_str().unwrap(), "--her2st", data.to_str().unwrap()];
    let timing = ok(&spahgc(&[&bench[..], &["--steps", "3", "--spots", "36", "--json"]].concat(), &cache));
    assert_eq!(timing["steps"], 3);
    assert_eq!(timing["spots_per_step"], 36.0, "{timing}");
    for key in ["cold_median_ms", "warm_median_ms", "warm_p95_ms", "cold_over_raw"] {
        assert!(timing[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {timing}");
    }

    // An altered or missing file is named.
    let bank = bundle.join("bank.spb");
    let mut bytes = std::fs::read(&bank).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&bank, &bytes).unwrap();
    let err = failed(&spahgc(&["bundle", "info", bundle.to_str().unwrap()], &cache));
    assert!(err.contains("bank.spb was altered"), "{err}");
    bytes[last] ^= 1;
    std::fs::write(&bank, &bytes).unwrap();
    ok(&spahgc(&["bundle", "info", bundle.to_str().unwrap(), "--json"], &cache));
    let manifest = bundle.join("manifest.json");
    let original = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, original.replace("\"format_version\": 2", "\"format_version\": 9")).unwrap();
    let err = failed(&spahgc(&["bundle", "info", bundle.to_str().unwrap()], &cache));
    assert!(err.contains("bundle format 9 is newer than this build reads (2)"), "{err}");
    std::fs::write(&manifest, original.replace("\"format_version\": 2", "\"format_version\": 1")).unwrap();
    let err = failed(&spahgc(&["bundle", "info", bundle.to_str().unwrap()], &cache));
    assert!(err.contains("bundle format 1 is older than this build reads (2); train the bundle again"), "{err}");
    std::fs::write(&manifest, original).unwrap();
    std::fs::remove_file(bundle.join("encoder/model.onnx")).unwrap();
    let err = failed(&spahgc(&["bundle", "info", bundle.to_str().unwrap()], &cache));
    assert!(err.contains("encoder/model.onnx is missing"), "{err}");
}

/// The files a prediction writes, as the summary lists them: the CSV, AnnData (read back with
/// Python's anndata and compared with the CSV), GeoJSON detections for QuPath with one
/// measurement per gene, and PNG heatmaps.
fn check_outputs(out: &Path, summary: &serde_json::Value, spots: usize, genes: usize) {
    let files: Vec<PathBuf> = summary["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().into()).collect();
    let name = |f: &PathBuf| f.file_name().unwrap().to_string_lossy().to_string();
    let heatmaps: Vec<&PathBuf> = files.iter().filter(|f| name(f).starts_with("heatmap-")).collect();
    assert_eq!(heatmaps.len(), genes.min(3), "the genes asked for, or the three most variable: {files:?}");
    for h in heatmaps {
        assert!(std::fs::read(h).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"), "{}", h.display());
    }
    let mut listed: Vec<String> = files.iter().map(name).chain(["run.json".to_string()]).collect();
    let mut present: Vec<String> =
        std::fs::read_dir(out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    listed.sort();
    present.sort();
    assert_eq!(listed, present, "the directory holds exactly this run's outputs");

    let geojson: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("detections.geojson")).unwrap()).unwrap();
    assert_eq!(geojson["type"], "FeatureCollection");
    let features = geojson["features"].as_array().unwrap();
    assert_eq!(features.len(), spots);
    for f in features {
        assert_eq!((&f["type"], &f["properties"]["objectType"]), (&"Feature".into(), &"detection".into()));
        assert_eq!(f["properties"]["measurements"].as_object().unwrap().len(), genes);
        let ring = f["geometry"]["coordinates"][0].as_array().unwrap();
        assert_eq!(ring.first(), ring.last(), "a closed polygon");
    }

    let Some(python) = spahgc_testdata::python_with(&["anndata"]) else { return };
    let check = r#"
import sys, anndata, numpy as np
a = anndata.read_h5ad(sys.argv[1])
rows = [l.rstrip("\n").split(",") for l in open(sys.argv[2])]
header, rows = rows[0], rows[1:]
assert a.shape == (len(rows), len(header) - 4), (a.shape, len(rows))
assert list(a.obs_names) == [r[0] for r in rows]
assert list(a.var_names) == header[4:]
assert a.obsm["spatial"].shape == (len(rows), 2)
assert np.allclose(a.obsm["spatial"], [[float(r[1]), float(r[2])] for r in rows], atol=0.06)
assert a.obs["in_tissue"].dtype == bool and list(a.obs["in_tissue"]) == [r[3] == "1" for r in rows]
assert np.allclose(a.X, [[float(v) for v in r[4:]] for r in rows], atol=6e-5)
print("anndata read", a.shape)
"#;
    let output = Command::new(python)
        .args(["-c", check])
        .arg(out.join("expression.h5ad"))
        .arg(out.join("expression.csv"))
        .output()
        .unwrap();
    assert!(output.status.success(), "anndata check: {}", String::from_utf8_lossy(&output.stderr));
}
