fn main() {
    let n: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let stack: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    let eval = std::env::args().nth(3).is_some();
    let deep = format!("{}true{}", "(".repeat(n), ")".repeat(n));
    let mut functions = format!("function f0() {{ return {deep}; }}\n");
    for i in 1..=19 {
        functions.push_str(&format!(
            "function f{i}() {{ return f{}() && {deep}; }}\n",
            i - 1
        ));
    }
    let source = format!("rules_version = '2'; {functions} service cloud.firestore {{ match /databases/{{database}}/documents {{ match /t/{{id}} {{ allow get: if f19(); }} }} }}");
    let parse_in_thread = std::env::args().nth(4).is_none();
    let pre = if parse_in_thread {
        None
    } else {
        Some(std::sync::Arc::new(
            hearth_rules::Ruleset::parse(&source).unwrap(),
        ))
    };
    let h = std::thread::Builder::new()
        .stack_size(stack * 1024)
        .spawn(move || {
            let r = match pre {
                Some(r) => r,
                None => std::sync::Arc::new(hearth_rules::Ruleset::parse(&source).unwrap()),
            };
            println!("parsed");
            if eval {
                let req = hearth_rules::Request {
                    method: hearth_rules::Method::Get,
                    path: "t/1".into(),
                    auth: None,
                    time: hearth_rules::Timestamp::now(),
                    resource: None,
                    request_resource: None,
                };
                println!("{:?}", r.evaluate(&req, &hearth_rules::NoDocuments));
            }
        })
        .unwrap();
    h.join().unwrap();
}
