package main

// The descriptions of the commands whose files hold none (cport help
// <command> shows them above the flags).

const serveDoc = `Serve runs the broadcast chat server: every message a client sends goes to
every client, its sender too (--no-echo: not to the sender). --framing says
where a message ends: raw relays each read as it is (the default, for nc and
the tutorial), line cuts after each newline, frame reads a 4-byte big-endian
length, then that many bytes. Every flag is also read from the environment,
CPORT_<FLAG> (CPORT_MAX_MESSAGE for --max-message); --print-config shows
each value and where it came from. SIGINT or SIGTERM stops the server
gracefully; a second one, at once.`

const clientDoc = `Client connects to a chat server, sends each line of standard input as a
message (in --framing: a line, or a frame of the line) and prints every
message that arrives. From a terminal, type lines; in a pipe,
printf 'hello\n' | cport client sends and prints what comes back until
--linger after standard input ends.`

const completionDoc = `Completion prints a script that completes cport's commands, subcommands,
flags and the values of flags with a few (--framing, --backend…) in bash,
zsh or fish. To load it in the current shell:

  bash:  source <(cport completion bash)
  zsh:   source <(cport completion zsh)
  fish:  cport completion fish | source

or write it where the shell looks for completions (bash-completion:
~/.local/share/bash-completion/completions/cport; zsh: a file _cport in a
directory of $fpath; fish: ~/.config/fish/completions/cport.fish).`
