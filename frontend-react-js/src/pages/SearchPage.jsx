import { useState } from 'react';
import { useSearchParams } from 'react-router-dom';
import { useApi } from '../api.js';
import ActivityFeed from '../components/ActivityFeed.jsx';
import Loadable from '../components/Loadable.jsx';
import { useLoad } from '../useLoad.js';

function SearchResults({ term }) {
  const api = useApi();
  const results = useLoad(() => api.search(term), term);
  return (
    <Loadable state={results}>
      {(activities) => (
        <ActivityFeed activities={activities} title="Search results" emptyText={`No cruds match "${term}".`} />
      )}
    </Loadable>
  );
}

/** The term lives in the address (`/search?term=`), so results can be linked and reloaded. */
export default function SearchPage() {
  const [params, setParams] = useSearchParams();
  const term = params.get('term');
  const [draft, setDraft] = useState(term || '');

  return (
    <>
      <h1>Search</h1>
      <form
        className="search"
        role="search"
        onSubmit={(event) => {
          event.preventDefault();
          setParams({ term: draft });
        }}
      >
        <label htmlFor="search-term" className="visually-hidden">
          Search cruds
        </label>
        <input
          id="search-term"
          type="search"
          value={draft}
          placeholder="Search cruds"
          onChange={(event) => setDraft(event.target.value)}
        />
        <button type="submit">Search</button>
      </form>
      {term !== null && <SearchResults term={term} />}
    </>
  );
}
