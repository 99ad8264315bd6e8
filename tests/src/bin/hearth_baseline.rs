//! The benchmark baseline: a bare actix-web server that answers every GET with the bytes of a
//! file, so `docs/benchmarks.md` can compare get-by-id with the fastest possible handler
//! returning the same body, in the same run.

use std::net::SocketAddr;

use actix_web::{web, App, HttpResponse, HttpServer};
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// The response body.
    #[arg(long)]
    body_file: std::path::PathBuf,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let body = web::Bytes::from(std::fs::read(&args.body_file)?);
    actix_web::rt::System::new().block_on(async move {
        println!("listening on http://{}", args.listen);
        HttpServer::new(move || {
            let body = body.clone();
            App::new().default_service(web::to(move || {
                let body = body.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body)
                }
            }))
        })
        .bind(args.listen)?
        .run()
        .await
    })
}
