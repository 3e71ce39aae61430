//! `cni6`: the operator's tool. All logic lives in the library ([`plugins::cli`]).

fn main() -> std::process::ExitCode {
    plugins::cli::main()
}
