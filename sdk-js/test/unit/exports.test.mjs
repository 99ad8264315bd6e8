import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as sdk from '../../dist/index.js';

test('the names DESIGN §9 promises are exported', () => {
  for (const name of ['createClient', 'serverTimestamp', 'increment', 'arrayUnion', 'arrayRemove', 'deleteField', 'HearthError']) {
    assert.equal(typeof sdk[name], 'function', name);
  }
  for (const name of ['GeoPoint', 'DocumentReference', 'CollectionReference', 'Query', 'DocumentSnapshot', 'QuerySnapshot', 'WriteBatch', 'Transaction']) {
    assert.equal(typeof sdk[name], 'function', name);
  }
});

test('a client has the DESIGN §9 surface', () => {
  const hearth = sdk.createClient('http://127.0.0.1:8080', { session: 'memory' });
  for (const method of ['signUp', 'signIn', 'signInAnonymously', 'signOut', 'onAuthStateChange']) {
    assert.equal(typeof hearth.auth[method], 'function', `auth.${method}`);
  }
  assert.equal(hearth.auth.currentUser, null);
  for (const method of ['collection', 'doc', 'batch', 'runTransaction', 'collectionGroup']) {
    assert.equal(typeof hearth[method], 'function', method);
  }
  const ref = hearth.collection('notes').doc('n1');
  for (const method of ['get', 'set', 'update', 'delete', 'onSnapshot']) assert.equal(typeof ref[method], 'function', `ref.${method}`);
  const query = hearth.collection('notes').where('a', '==', 1).orderBy('a').limit(1);
  for (const method of ['get', 'count', 'onSnapshot']) assert.equal(typeof query[method], 'function', `query.${method}`);
});
