// Hearth realtime todos: sign-up/sign-in, private todos (owner-only rules) and a shared board
// that every signed-in user sees change in realtime. Plain DOM code, so the Hearth calls stand out.
// Writes also pass a validation hook (functions/validate-todo.mjs) when it is registered.
import { createClient, serverTimestamp, HearthError } from '@hearth/client';
import './style.css';

// Where the Hearth server is: `?server=` in the page URL, else VITE_HEARTH_URL at build time,
// else the page's own origin when the dev/preview server proxies /v1 (see vite.config.js),
// else a local `hearth serve` on its default address.
const serverUrl =
  new URLSearchParams(location.search).get('server') ||
  import.meta.env.VITE_HEARTH_URL ||
  (import.meta.env.VITE_HEARTH_PROXY ? location.origin : 'http://127.0.0.1:8080');

// 'local' keeps the session in localStorage, so a reload stays signed in.
const hearth = createClient(serverUrl, { session: 'local' });
// Handy in the browser console (and used by the end-to-end tests to probe the rules).
window.hearth = hearth;

const $ = (id) => document.getElementById(id);
$('server-url').textContent = serverUrl;

function showError(error) {
  const box = $('error');
  if (!error) {
    box.hidden = true;
    box.textContent = '';
    box.dataset.code = '';
    return;
  }
  box.hidden = false;
  // A write the validation hook refused is a HearthError with code 'hook_rejected' and the
  // function's own message ("Todos may not mention ..."), shown as it is.
  box.textContent = error instanceof HearthError ? `${error.code}: ${error.message}` : String(error);
  box.dataset.code = error instanceof HearthError ? error.code : '';
  console.error(error);
}

// Runs an action, shows its failure (a HearthError's code) instead of throwing.
async function attempt(action) {
  showError(null);
  try {
    await action();
  } catch (error) {
    showError(error);
  }
}

// --- auth -------------------------------------------------------------------------------

function credentials() {
  return { email: $('email').value.trim(), password: $('password').value };
}

$('auth-form').addEventListener('submit', (event) => {
  event.preventDefault();
  attempt(() => hearth.auth.signIn(credentials()));
});
$('sign-up').addEventListener('click', () => {
  if (!$('auth-form').reportValidity()) return;
  attempt(() => hearth.auth.signUp(credentials()));
});
$('sign-out').addEventListener('click', () => attempt(() => hearth.auth.signOut()));

let stopListening = [];
let currentUid = null;

hearth.auth.onAuthStateChange((user) => {
  if ((user?.uid ?? null) === currentUid) {
    if (user) $('user-email').textContent = user.email ?? 'anonymous';
    return;
  }
  currentUid = user?.uid ?? null;
  for (const stop of stopListening) stop();
  stopListening = [];
  $('todo-list').replaceChildren();
  $('board-list').replaceChildren();

  $('auth-panel').hidden = Boolean(user);
  $('user-panel').hidden = !user;
  $('app').hidden = !user;
  document.body.dataset.user = user ? user.uid : '';
  if (!user) return;

  $('user-email').textContent = user.email ?? 'anonymous';
  $('user-uid').textContent = `uid ${user.uid}`;
  $('password').value = '';
  stopListening = [listenToTodos(user), listenToBoard(user)];
});

// --- private todos ----------------------------------------------------------------------

const todos = hearth.collection('todos');

function listenToTodos(user) {
  // The rules only allow queries that ask for the caller's own todos.
  return todos.where('owner', '==', user.uid).onSnapshot(
    (snapshot) => {
      const docs = [...snapshot.docs].sort(
        (a, b) => (a.data().at?.getTime?.() ?? 0) - (b.data().at?.getTime?.() ?? 0),
      );
      renderList($('todo-list'), $('todo-empty'), docs, (doc) => ({
        text: doc.data().text,
        done: doc.data().done,
        onToggle: (done) => attempt(() => doc.ref.update({ done })),
        onDelete: () => attempt(() => doc.ref.delete()),
      }));
    },
    (error) => showError(error),
  );
}

$('todo-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('todo-text');
  // Sent as typed: the validation hook (functions/validate-todo.mjs) tidies the whitespace and
  // refuses empty or banned text, so every client gets the same treatment.
  const text = input.value;
  if (!text) return;
  attempt(async () => {
    await todos.add({ owner: hearth.auth.currentUser.uid, text, done: false, at: serverTimestamp() });
    input.value = '';
  });
});

// --- shared board -----------------------------------------------------------------------

const board = hearth.collection('board');

function listenToBoard(user) {
  return board.orderBy('at').onSnapshot(
    (snapshot) => {
      renderList($('board-list'), $('board-empty'), snapshot.docs, (doc) => ({
        text: doc.data().text,
        done: doc.data().done,
        by: doc.data().author,
        onToggle: (done) => attempt(() => doc.ref.update({ done })),
        // Only the author may delete (the rules say so); others don't get the button.
        onDelete: doc.data().by === user.uid ? () => attempt(() => doc.ref.delete()) : null,
      }));
    },
    (error) => showError(error),
  );
}

$('board-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('board-text');
  const text = input.value;
  if (!text) return;
  const user = hearth.auth.currentUser;
  // The rules check the fields (1–200 characters, the author's own uid): a longer text comes back
  // as permission_denied. Then the validation hook judges the text itself: whitespace tidied,
  // blank or banned text refused with hook_rejected. Both errors are shown above the lists.
  attempt(async () => {
    await board.add({ text, done: false, by: user.uid, author: user.email ?? 'anonymous', at: serverTimestamp() });
    input.value = '';
  });
});

// --- rendering --------------------------------------------------------------------------

function renderList(list, empty, docs, describe) {
  list.replaceChildren(
    ...docs.map((doc) => {
      const item = describe(doc);
      const li = document.createElement('li');
      li.dataset.id = doc.id;
      li.classList.toggle('done', Boolean(item.done));

      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = Boolean(item.done);
      box.setAttribute('aria-label', `done: ${item.text}`);
      box.addEventListener('change', () => item.onToggle(box.checked));

      const text = document.createElement('span');
      text.className = 'text';
      text.textContent = item.text;
      li.append(box, text);

      if (item.by) {
        const by = document.createElement('span');
        by.className = 'by';
        by.textContent = item.by;
        li.append(by);
      }
      if (item.onDelete) {
        const remove = document.createElement('button');
        remove.type = 'button';
        remove.textContent = '✕';
        remove.title = 'delete';
        remove.addEventListener('click', item.onDelete);
        li.append(remove);
      }
      return li;
    }),
  );
  empty.hidden = docs.length > 0;
}
