import { render } from '@testing-library/react';
import { MemoryRouter } from 'react-router-dom';
import { ApiContext, createApi } from '../api.js';
import App from '../App.jsx';

/** Render the whole app at `path`, talking to the backend at `baseUrl`. */
export function renderApp(path, baseUrl) {
  return render(
    <ApiContext.Provider value={createApi(baseUrl)}>
      <MemoryRouter initialEntries={[path]}>
        <App />
      </MemoryRouter>
    </ApiContext.Provider>,
  );
}
