use super::*;
use std::fs;

fn names(file: &ManifestFile) -> Vec<String> {
    file.objects.iter().map(|o| o.key().to_string()).collect()
}

#[test]
fn file_parsing() {
    struct Case {
        name: &'static str,
        file: &'static str,
        text: &'static str,
        objects: &'static [&'static str],
        problems: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "multi-document yaml with empty documents",
            file: "a.yaml",
            text: "---\n# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
            objects: &["Service ns/s", "ConfigMap default/c"],
            problems: &[],
        },
        Case {
            name: "a yaml List",
            file: "a.yml",
            text: "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: a}}\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n",
            objects: &["Service default/a", "Service default/b"],
            problems: &[],
        },
        Case {
            name: "a json List",
            file: "a.json",
            text: r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"t","namespace":"x"},"data":{"tls.crt":"Zm9v"}}]}"#,
            objects: &["Secret x/t"],
            problems: &[],
        },
        Case {
            name: "a single json object",
            file: "a.json",
            text: r#"{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"e"},"addressType":"IPv4"}"#,
            objects: &["EndpointSlice default/e"],
            problems: &[],
        },
        Case {
            name: "unknown kinds and nameless documents are skipped, the rest loads",
            file: "a.yaml",
            text: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\napiVersion: v1\nkind: Service\nmetadata: {namespace: x}\n---\njust a string\n---\napiVersion: v1\nkind: Service\nmetadata: {name: ok}\n",
            objects: &["Service default/ok"],
            problems: &[
                "document 1: unsupported object kind \"Deployment\" apiVersion \"apps/v1\"",
                "document 2: Service has no metadata.name",
                "document 3: not an object",
            ],
        },
        Case {
            name: "a known kind whose body does not decode",
            file: "a.yaml",
            text: "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {ports: 80}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: ok}\n",
            objects: &["Service default/ok"],
            problems: &["document 1: Service default/bad: invalid type: integer `80`, expected a sequence"],
        },
        Case {
            name: "malformed yaml yields nothing",
            file: "a.yaml",
            text: "apiVersion: v1\nkind: Service\nmetadata: {name: ok}\n---\nkind: [unclosed\n",
            objects: &[],
            problems: &["invalid YAML in document 2: did not find expected ',' or ']' at line 6 column 1, while parsing a flow sequence at line 5 column 7"],
        },
        Case {
            name: "malformed json yields nothing",
            file: "a.json",
            text: "{\"apiVersion\": ",
            objects: &[],
            problems: &["invalid JSON: EOF while parsing a value at line 1 column 15"],
        },
        Case {
            name: "an empty file",
            file: "a.yaml",
            text: "",
            objects: &[],
            problems: &[],
        },
    ];
    for case in cases {
        let file = parse_file(case.file.to_string(), case.text);
        assert_eq!(names(&file), case.objects, "{}: objects", case.name);
        let problems: Vec<_> = file.problems.iter().map(FileProblem::message).collect();
        assert_eq!(problems, case.problems, "{}: problems", case.name);
    }
}

#[test]
fn load_dir_reads_matching_files_in_name_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = |name: &str| format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n");
    fs::write(dir.path().join("b.yaml"), svc("b")).expect("write");
    fs::write(dir.path().join("a.yml"), svc("a")).expect("write");
    fs::write(
        dir.path().join("c.json"),
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"c"}}"#,
    )
    .expect("write");
    fs::write(dir.path().join(".hidden.yaml"), svc("hidden")).expect("write");
    fs::write(dir.path().join("notes.txt"), svc("txt")).expect("write");
    fs::create_dir(dir.path().join("sub.yaml")).expect("mkdir");
    let set = load_dir(dir.path()).expect("loads");
    let files: Vec<_> = set.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(files, ["a.yml", "b.yaml", "c.json"]);
    let objects: Vec<_> = set.files.iter().flat_map(names).collect();
    assert_eq!(
        objects,
        [
            "Service default/a",
            "Service default/b",
            "Service default/c"
        ]
    );
}

#[test]
fn many_files_are_parsed_in_parallel_and_kept_in_name_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let count = PARALLEL_FROM_FILES * 3 + 1;
    for i in 0..count {
        // One broken file among them: its problem stays with its own name.
        let text = if i == 7 {
            "kind: [unclosed".to_string()
        } else {
            format!("apiVersion: v1\nkind: Service\nmetadata: {{name: s{i:04}}}\n")
        };
        fs::write(dir.path().join(format!("f{i:04}.yaml")), text).expect("write");
    }
    let set = load_dir(dir.path()).expect("loads");
    assert_eq!(set.files.len(), count);
    for (i, file) in set.files.iter().enumerate() {
        assert_eq!(file.name, format!("f{i:04}.yaml"));
        if i == 7 {
            assert!(file.objects.is_empty());
            assert_eq!(file.problems.len(), 1, "{:?}", file.problems);
        } else {
            assert_eq!(names(file), [format!("Service default/s{i:04}")]);
            assert!(file.problems.is_empty(), "{:?}", file.problems);
        }
    }
}

#[test]
fn load_dir_fails_only_for_the_directory_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let err = load_dir(&missing).expect_err("missing dir");
    assert!(err.to_string().starts_with("manifest directory "), "{err}");
}

#[test]
fn fingerprint_changes_with_content_names_and_symlink_swaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let first = fingerprint(root).expect("fingerprint");
    assert_eq!(
        first,
        fingerprint(root).expect("fingerprint"),
        "stable when unchanged"
    );

    fs::write(root.join("a.yaml"), "x: 1\n").expect("write");
    let with_file = fingerprint(root).expect("fingerprint");
    assert_ne!(first, with_file, "new file");

    fs::write(root.join("a.yaml"), "x: 22\n").expect("write");
    let rewritten = fingerprint(root).expect("fingerprint");
    assert_ne!(with_file, rewritten, "content change");

    fs::write(root.join("ignored.txt"), "x").expect("write");
    fs::write(root.join(".hidden.yaml"), "x").expect("write");
    assert_eq!(
        rewritten,
        fingerprint(root).expect("fingerprint"),
        "ignored files"
    );

    // A ConfigMap-style mount: b.yaml -> ..data/b.yaml, ..data -> ..v1, then ..data swaps to ..v2
    // holding a file of the same length.
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        fs::create_dir(root.join("..v1")).expect("mkdir");
        fs::create_dir(root.join("..v2")).expect("mkdir");
        fs::write(root.join("..v1/b.yaml"), "y: 1\n").expect("write");
        fs::write(root.join("..v2/b.yaml"), "y: 2\n").expect("write");
        symlink("..v1", root.join("..data")).expect("symlink");
        symlink("..data/b.yaml", root.join("b.yaml")).expect("symlink");
        let before = fingerprint(root).expect("fingerprint");
        symlink("..v2", root.join("..data_tmp")).expect("symlink");
        fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
        let after = fingerprint(root).expect("fingerprint");
        assert_ne!(before, after, "symlink swap");
        let set = load_dir(root).expect("loads");
        assert_eq!(set.files.len(), 2, "the symlinked file is read");
    }
}
